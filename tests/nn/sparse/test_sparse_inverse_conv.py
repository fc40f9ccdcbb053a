"""SparseInverseConv{2,3}d: returns exactly to the input sites of the strided conv it inverts and equals
torch's conv_transpose (with that conv's stride, padding and dilation) of the densified strided output,
read at those sites (output, feature, weight and bias gradients); gradcheck; errors when no matching strided
conv produced the input."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.nn import (SparseConv2d, SparseConv3d, SparseConvTranspose3d, SparseInverseConv2d,
                          SparseInverseConv3d, SubMConv3d)
from irregconv.testing import DEVICES, conv_at_sites


def _oracle(module, down, y, x):
    """conv_transpose of ``y`` with ``down``'s geometry; output padding makes its grid ``x``'s again (it can
    come out smaller by up to ``stride - 1`` sites when the strided conv dropped the last rows)."""
    geometry = (down.kernel_size, down.stride, down.padding, down.dilation)
    short = tuple((n - 1) * s - 2 * p + d * (k - 1) + 1 for n, k, s, p, d in zip(y.spatial_shape, *geometry))
    output_padding = tuple(a - b for a, b in zip(x.spatial_shape, short))
    taps = None if module.region.kind == "cube" else module.region.taps

    def run(feats, weight, bias=None):
        out = conv_at_sites(feats, y.coords, x.coords, weight, y.spatial_shape, y.batch_size, *geometry, taps,
                            transposed=True, output_padding=output_padding)
        return out if bias is None else out + bias
    return run


def _check(down, up, x, check_parity, **tol):
    y = down(x)
    out = up(y)
    assert out.sites is x.sites and out.feats.shape == (x.num_sites, up.out_channels)
    check_parity(up, y, _oracle(up, down, y, x), **tol)


@pytest.mark.parametrize("kernel_size", [2, 3, (3, 1, 1)])
@pytest.mark.parametrize("stride", [2, (2, 1, 1), 3])
@pytest.mark.parametrize("padding", [0, 1])
def test_inverse_conv_3d_returns_to_the_input_sites_and_matches_conv_transpose(kernel_size, stride, padding,
                                                                                sparse_input, check_parity):
    x = sparse_input(channels=3)
    down = SparseConv3d(3, 4, kernel_size, stride=stride, padding=padding).double()
    _check(down, SparseInverseConv3d(4, 3, kernel_size).double(), x, check_parity)


@pytest.mark.parametrize("dilation, groups, region", [(2, 1, "cube"), (1, 2, "cube"), (1, "depthwise", "cube"),
                                                      (1, 1, "cross")])
def test_inverse_conv_3d_dilation_groups_regions(dilation, groups, region, sparse_input, check_parity):
    channels = 4
    groups = channels if groups == "depthwise" else groups
    x = sparse_input(channels=channels)
    down = SparseConv3d(channels, channels, 3, 2, 1, dilation, region=region).double()
    up = SparseInverseConv3d(channels, channels, 3, groups=groups, region=region).double()
    _check(down, up, x, check_parity)


@pytest.mark.parametrize("kernel_size, stride, padding", [(3, 2, 1), (2, 2, 0), ((3, 1), (2, 1), (0, 0))])
def test_inverse_conv_2d(kernel_size, stride, padding, sparse_input, check_parity):
    x = sparse_input((7, 9), channels=2)
    down = SparseConv2d(2, 3, kernel_size, stride, padding).double()
    _check(down, SparseInverseConv2d(3, 2, kernel_size, bias=False).double(), x, check_parity)


@pytest.mark.parametrize("device", DEVICES)
def test_inverse_conv_float32_on_device(device, sparse_input, check_parity):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    down = SparseConv3d(8, 8, 3, stride=2, padding=1).to(device)
    _check(down, SparseInverseConv3d(8, 8, 3).to(device), x, check_parity, rtol=1e-4, atol=1e-5)


def test_inverse_conv_gradcheck(sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=6)
    y = SparseConv3d(2, 3, 3, stride=2, padding=1).double()(x)
    gradcheck_module(SparseInverseConv3d(3, 2, 3).double(), y)


def test_u_net_decoder_finds_its_encoder_through_submanifold_layers(sparse_input):
    # a U-Net: down twice, submanifold convs on the coarse sites (same sites, new features), up twice
    x = sparse_input(channels=2)
    down1, down2 = SparseConv3d(2, 3, 3, 2, 1).double(), SparseConv3d(3, 4, 2, 2).double()
    mid = SubMConv3d(4, 4, 3).double()
    up2, up1 = SparseInverseConv3d(4, 3, 2).double(), SparseInverseConv3d(3, 2, 3).double()
    y1 = down1(x)
    y2 = mid(down2(y1))
    z1 = up2(y2)
    z1 = z1.replace(z1.feats + y1.feats)                 # skip connection: the same sites, row for row
    assert z1.sites is y1.sites and up1(z1).sites is x.sites
    builds = x.sites.cache.builds
    up1(up2(mid(down2(down1(x)))))                       # a second pass builds nothing new
    assert x.sites.cache.builds == builds


def test_inverse_conv_with_explicit_geometry_of_the_strided_conv(sparse_input):
    x = sparse_input()
    y = SparseConv3d(3, 4, 3, stride=(2, 1, 1), padding=1).double()(x)
    out = SparseInverseConv3d(4, 3, 3, stride=(2, 1, 1), padding=1, dilation=1).double()(y)
    assert out.sites is x.sites
    with pytest.raises(ValueError, match=r"SparseInverseConv3d: these sites were not produced by a strided sparse "
                                         r"conv with kernel_size=\(3, 3, 3\) \(stride=\(2, 2, 2\)\).*produced by: "
                                         r"kernel_size=\(3, 3, 3\), stride=\(2, 1, 1\)"):
        SparseInverseConv3d(4, 3, 3, stride=2).double()(y)


def test_inverse_conv_without_a_matching_strided_conv_raises(sparse_input):
    x = sparse_input()
    with pytest.raises(ValueError, match=r"SparseInverseConv3d: these sites were not produced by a strided sparse "
                                         r"conv with kernel_size=\(3, 3, 3\).*no strided conv \(they are input "
                                         r"sites\)"):
        SparseInverseConv3d(3, 3, 3).double()(x)
    y = SparseConv3d(3, 4, 2, stride=2).double()(x)
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 3\).*produced by: kernel_size=\(2, 2, 2\)"):
        SparseInverseConv3d(4, 3, 3).double()(y)
    generated = SparseConvTranspose3d(3, 4, 2, stride=2).double()(x)
    with pytest.raises(ValueError, match="must follow the strided conv it inverts"):
        SparseInverseConv3d(4, 3, 2).double()(generated)
    # same coordinates, but new sites: the record of the strided conv lives on the sites it made
    copy = SparseTensor(y.feats, y.coords, y.spatial_shape, y.batch_size)
    with pytest.raises(ValueError, match="they are input sites"):
        SparseInverseConv3d(4, 3, 2).double()(copy)


def test_inverse_conv_repr_and_channel_check(sparse_input):
    assert repr(SparseInverseConv3d(4, 2, 3)) == "SparseInverseConv3d(4, 2, kernel_size=(3, 3, 3))"
    assert repr(SparseInverseConv3d(4, 2, 3, groups=2, bias=False)) == \
        "SparseInverseConv3d(4, 2, kernel_size=(3, 3, 3), groups=2, bias=False)"
    y = SparseConv3d(3, 4, 3, stride=2).double()(sparse_input())
    with pytest.raises(ValueError, match="SparseInverseConv3d: in_channels=3 but the input has 4 channels"):
        SparseInverseConv3d(3, 3, 3).double()(y)
    with pytest.raises(ValueError, match="SparseInverseConv3d: stride must be >= 1"):
        SparseInverseConv3d(3, 3, 3, stride=0)
