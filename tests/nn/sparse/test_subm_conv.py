"""SubMConv{1,2,3}d against a dense conv (padding (k // 2) * dilation) of the densified input read at the
active sites: output, input gradient, weight and bias gradients; gradcheck; rulebook reuse counted by
builds; shapes, repr and errors."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.nn import SubMConv1d, SubMConv2d, SubMConv3d
from irregconv.rulebook import KernelRegion
from irregconv.testing import DEVICES, subm_conv_at_sites

SUBM = {1: SubMConv1d, 2: SubMConv2d, 3: SubMConv3d}
SHAPES = {1: (17,), 2: (7, 8), 3: (5, 6, 7)}


def _oracle(module, x):
    taps = None if module.region.kind == "cube" else module.region.taps

    def run(feats, weight, bias=None):
        out = subm_conv_at_sites(feats, x.coords, weight, x.spatial_shape, x.batch_size, module.kernel_size,
                                 module.dilation, taps)
        return out if bias is None else out + bias
    return run


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 3, "depthwise"])
def test_subm_conv_3d_matches_dense_conv(kernel_size, dilation, groups, sparse_input, check_parity):
    c_in, c_out = (6, 6) if groups == "depthwise" else (3, 6)
    groups = c_in if groups == "depthwise" else groups
    x = sparse_input(channels=c_in)
    module = SubMConv3d(c_in, c_out, kernel_size, dilation=dilation, groups=groups).double()
    check_parity(module, x, _oracle(module, x))


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_subm_conv_1d_2d_match_dense_conv(dims, kernel_size, dilation, bias, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims], channels=2, num_sites=8 if dims == 1 else 20)
    module = SUBM[dims](2, 4, kernel_size, dilation=dilation, bias=bias).double()
    check_parity(module, x, _oracle(module, x))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("region", ["cross", KernelRegion.custom([[0, 0, 0], [1, 0, 0], [0, -1, 1]])])
def test_subm_conv_non_cube_regions_match_masked_dense_kernel(dims, region, sparse_input, check_parity):
    if not isinstance(region, str) and region.dims != dims:
        region = KernelRegion.custom([[0, 0], [1, 0], [-1, 1]])
    x = sparse_input(SHAPES[dims])
    module = SUBM[dims](3, 4, 3, region=region).double()
    assert module.weight.shape[0] == module.region.volume < 3 ** dims
    check_parity(module, x, _oracle(module, x))


def test_subm_conv_even_kernel_matches_dense_conv(sparse_input, check_parity):
    # even kernels are not centred: the centre tap is kernel_size // 2, padded as the oracle pads
    x = sparse_input()
    module = SubMConv3d(3, 4, (2, 3, 4)).double()
    check_parity(module, x, _oracle(module, x))


@pytest.mark.parametrize("device", DEVICES)
def test_subm_conv_float32_on_device(device, sparse_input, check_parity):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    module = SubMConv3d(8, 8, 3, groups=2).to(device)
    check_parity(module, x, _oracle(module, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups, region", [(1, "cube"), (2, "cross")])
def test_subm_conv_gradcheck(groups, region, sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=6)
    gradcheck_module(SubMConv3d(2, 4, 3, groups=groups, region=region).double(), x)


def test_subm_conv_keeps_sites_order_and_shape(sparse_input):
    x = sparse_input(channels=3)
    y = SubMConv3d(3, 5, 3).double()(x)
    assert y.sites is x.sites and y.feats.shape == (x.num_sites, 5)
    # a lone site sees only itself: the centre tap and the bias
    lone = SparseTensor(torch.randn(1, 3, dtype=torch.float64), torch.tensor([[0, 2, 2, 2]]), (5, 5, 5))
    conv = SubMConv3d(3, 5, 3).double()
    torch.testing.assert_close(conv(lone).feats, lone.feats @ conv.weight[13] + conv.bias, rtol=1e-7, atol=1e-9)


def test_subm_conv_empty_input():
    x = SparseTensor(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.int32), (4, 4, 4), 2)
    y = SubMConv3d(3, 5)(x)
    assert y.feats.shape == (0, 5) and y.sites is x.sites


def test_subm_conv_repr_and_parameter_shapes():
    assert repr(SubMConv3d(4, 8, 3)) == "SubMConv3d(4, 8, kernel_size=(3, 3, 3))"
    conv = SubMConv3d(4, 8, (3, 1, 1), dilation=2, groups=4, bias=False, region="cross")
    assert repr(conv) == ("SubMConv3d(4, 8, kernel_size=(3, 1, 1), dilation=(2, 2, 2), groups=4, region=cross, "
                          "bias=False)")
    assert conv.weight.shape == (3, 4, 1, 2) and conv.bias is None
    assert SubMConv2d(2, 6, 5).weight.shape == (25, 2, 6) and SubMConv1d(2, 6, 3).bias.shape == (6,)
    assert SubMConv3d(2, 6, 3, region="cross").weight.shape == (7, 2, 6)


# --------------------------------------------------------------------------------------- rulebook reuse


def test_rulebook_built_once_for_layers_with_the_same_geometry(sparse_input):
    x = sparse_input()
    first, second = SubMConv3d(3, 4, 3).double(), SubMConv3d(4, 4, 3).double()
    y = second(first(x))
    assert x.sites.cache.builds == 1 and y.sites is x.sites
    SubMConv3d(4, 2, 3, groups=2).double()(y)          # channels and groups are not geometry
    assert x.sites.cache.builds == 1
    SubMConv3d(4, 2, 3, dilation=2).double()(y)        # another dilation is
    SubMConv3d(4, 2, (3, 1, 1)).double()(y)            # and so is another kernel
    SubMConv3d(4, 2, 3, region="cross").double()(y)    # and another region of the same box
    assert x.sites.cache.builds == 4


def test_replace_shares_the_rulebook_and_new_coords_get_a_fresh_cache(sparse_input):
    x = sparse_input()
    conv = SubMConv3d(3, 3, 3).double()
    conv(x)
    conv(x.replace(torch.randn_like(x.feats)))
    assert x.sites.cache.builds == 1
    same_coords = SparseTensor(x.feats, x.coords.clone(), x.spatial_shape, x.batch_size)
    conv(same_coords)
    assert same_coords.sites is not x.sites and same_coords.sites.cache.builds == 1 and x.sites.cache.builds == 1


def test_cached_rulebook_gives_the_same_output_as_a_fresh_one(sparse_input):
    x = sparse_input()
    conv = SubMConv3d(3, 4, 3).double()
    conv(x)
    cached = conv(x)
    assert x.sites.cache.builds == 1
    fresh = conv(SparseTensor(x.feats, x.coords, x.spatial_shape, x.batch_size))
    torch.testing.assert_close(cached.feats, fresh.feats, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- errors


def test_subm_conv_bad_input(sparse_input):
    conv = SubMConv3d(3, 4).double()
    with pytest.raises(ValueError, match=r"SubMConv3d: in_channels=3 but the input has 2 channels; feed features "
                                         r"\[N, 3\] or build the layer with in_channels=2"):
        conv(sparse_input(channels=2))
    with pytest.raises(ValueError, match=r"SubMConv3d: expects 3 spatial axes .* got a SparseTensor with 2 "
                                         r"\(coords \[40, 3\]\); use the 2d variant"):
        conv(sparse_input((6, 6)))
    with pytest.raises(TypeError, match="SubMConv3d: input must be an irregconv.SparseTensor, got Tensor"):
        conv(torch.randn(4, 3))
    with pytest.raises(TypeError, match=r"SubMConv3d: input features are torch.float32 but the weight is "
                                        r"torch.float64"):
        conv(sparse_input(dtype=torch.float32))
    with pytest.raises(TypeError, match="SparseTensor: coords must be an integer tensor .* got torch.float32"):
        conv(SparseTensor(torch.randn(2, 3), torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 1.0]])))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(in_channels=4, out_channels=6, groups=4), ValueError,
     "SubMConv3d: groups=4 must divide in_channels=4 and out_channels=6"),
    (dict(in_channels=0, out_channels=6), ValueError, "SubMConv3d: in_channels must be a positive int, got 0"),
    (dict(in_channels=2, out_channels=2.0), ValueError, "SubMConv3d: out_channels must be a positive int, got 2.0"),
    (dict(in_channels=2, out_channels=2, kernel_size=2.5), TypeError, "SubMConv3d: kernel_size must be an int"),
    (dict(in_channels=2, out_channels=2, kernel_size=(3, 3)), ValueError,
     r"SubMConv3d: kernel_size must have 3 entries \(one per spatial axis\), got \(3, 3\)"),
    (dict(in_channels=2, out_channels=2, dilation=0), ValueError, "SubMConv3d: dilation must be >= 1"),
    (dict(in_channels=2, out_channels=2, region="ball"), ValueError,
     "SubMConv3d: region must be 'cube', 'cross' or a KernelRegion, got 'ball'"),
    (dict(in_channels=2, out_channels=2, region=KernelRegion.cube(3, 2)), ValueError,
     "SubMConv3d: region has 2 axes, expected 3"),
])
def test_subm_conv_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SubMConv3d(**kwargs)
