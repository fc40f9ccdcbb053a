"""SparseConv{1,2,3}d against torch's conv of the densified input read at the output sites (output, feature,
weight and bias gradients) over kernels, strides, padding, dilation, groups and regions; output sites
against a dense occupancy oracle; gradcheck; output sites reused; shapes, repr and errors."""
import pytest
import torch

from irregconv import SparseTensor
from irregconv.nn import SparseConv1d, SparseConv2d, SparseConv3d
from irregconv.testing import DEVICES, conv_at_sites, reference_output_sites

CONV = {1: SparseConv1d, 2: SparseConv2d, 3: SparseConv3d}
SHAPES = {1: (17,), 2: (7, 8), 3: (5, 6, 7)}


def _taps(module):
    return None if module.region.kind == "cube" else module.region.taps


def _oracle(module, x, out_coords):
    def run(feats, weight, bias=None):
        out = conv_at_sites(feats, x.coords, out_coords, weight, x.spatial_shape, x.batch_size, module.kernel_size,
                            module.stride, module.padding, module.dilation, _taps(module))
        return out if bias is None else out + bias
    return run


def _check(module, x, check_parity, **tol):
    y = module(x)
    expected_sites = reference_output_sites(x.coords, x.spatial_shape, x.batch_size, module.kernel_size,
                                            module.stride, module.padding, module.dilation, _taps(module))
    torch.testing.assert_close(y.coords, expected_sites.to(y.coords.device), rtol=0, atol=0)
    dense_shape = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                        zip(x.spatial_shape, module.kernel_size, module.stride, module.padding, module.dilation))
    assert y.spatial_shape == dense_shape and y.batch_size == x.batch_size
    check_parity(module, x, _oracle(module, x, y.coords), **tol)


@pytest.mark.parametrize("kernel_size", [1, 3, (3, 1, 1)])
@pytest.mark.parametrize("stride", [1, 2, (2, 1, 1)])
@pytest.mark.parametrize("padding", [0, 1])
def test_sparse_conv_3d_matches_dense_conv(kernel_size, stride, padding, sparse_input, check_parity):
    x = sparse_input()
    _check(SparseConv3d(3, 4, kernel_size, stride=stride, padding=padding).double(), x, check_parity)


@pytest.mark.parametrize("kernel_size, stride, padding, dilation, groups", [
    (3, 2, 1, 2, 1), (3, 1, 2, 2, 1), (2, 2, 0, 1, 3), (3, 2, 1, 1, 3), (3, 2, (0, 1, 1), 1, "depthwise"),
    ((2, 3, 1), (1, 2, 3), (1, 0, 0), (2, 1, 1), 1),
])
def test_sparse_conv_3d_dilation_groups(kernel_size, stride, padding, dilation, groups, sparse_input, check_parity):
    c_in, c_out = (6, 6) if groups == "depthwise" else (3, 6)
    groups = c_in if groups == "depthwise" else groups
    x = sparse_input(channels=c_in)
    module = SparseConv3d(c_in, c_out, kernel_size, stride, padding, dilation, groups=groups).double()
    _check(module, x, check_parity)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel_size, stride, padding", [(1, 1, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_sparse_conv_1d_2d_match_dense_conv(dims, kernel_size, stride, padding, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims], channels=2, num_sites=8 if dims == 1 else 20)
    _check(CONV[dims](2, 4, kernel_size, stride=stride, padding=padding).double(), x, check_parity)


@pytest.mark.parametrize("dims", [2, 3])
def test_sparse_conv_cross_region_matches_masked_dense_kernel(dims, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims])
    _check(CONV[dims](3, 4, 3, stride=2, padding=1, region="cross", bias=False).double(), x, check_parity)


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_conv_float32_on_device(device, sparse_input, check_parity):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    _check(SparseConv3d(8, 8, 3, stride=2, padding=1, groups=2).to(device), x, check_parity, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(stride=(2, 1, 1), groups=2, region="cross")])
def test_sparse_conv_gradcheck(kwargs, sparse_input, gradcheck_module):
    gradcheck_module(SparseConv3d(2, 4, 3, **kwargs).double(), sparse_input(channels=2, num_sites=6))


def test_output_sites_and_rulebook_are_reused(sparse_input):
    x = sparse_input()
    down = SparseConv3d(3, 4, 3, stride=2, padding=1).double()
    y1, y2 = down(x), down(x.replace(torch.randn_like(x.feats)))
    other = SparseConv3d(3, 2, 3, stride=2, padding=1).double()(x)   # channels are not geometry
    assert y1.sites is y2.sites is other.sites and x.sites.cache.builds == 1
    assert SparseConv3d(3, 4, 3, stride=2).double()(x).sites is not y1.sites and x.sites.cache.builds == 2


def test_sparse_conv_empty_input():
    x = SparseTensor(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.int32), (6, 6, 6), 2)
    y = SparseConv3d(3, 5, 3, stride=2, padding=1)(x)
    assert y.feats.shape == (0, 5) and y.spatial_shape == (3, 3, 3) and y.batch_size == 2


def test_sparse_conv_repr_and_parameter_shapes():
    assert repr(SparseConv3d(4, 8, 3)) == "SparseConv3d(4, 8, kernel_size=(3, 3, 3), stride=(1, 1, 1))"
    conv = SparseConv3d(4, 8, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), dilation=2, groups=2, bias=False)
    assert repr(conv) == ("SparseConv3d(4, 8, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), "
                          "dilation=(2, 2, 2), groups=2, bias=False)")
    assert conv.weight.shape == (3, 2, 2, 4) and conv.bias is None
    assert SparseConv2d(2, 6, 2, stride=2).weight.shape == (4, 2, 6)


def test_sparse_conv_bad_input(sparse_input):
    conv = SparseConv3d(3, 4, 3, stride=2).double()
    with pytest.raises(ValueError, match="SparseConv3d: in_channels=3 but the input has 4 channels"):
        conv(sparse_input(channels=4))
    with pytest.raises(ValueError, match="SparseConv3d: expects 3 spatial axes"):
        conv(sparse_input((6, 6)))
    with pytest.raises(TypeError, match="SparseConv3d: input must be an irregconv.SparseTensor, got dict"):
        conv({"feats": torch.zeros(1, 3)})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(stride=0), ValueError, r"SparseConv3d: stride must be >= 1 on every axis, got 0"),
    (dict(padding=-1), ValueError, r"SparseConv3d: padding must be >= 0 on every axis, got -1"),
    (dict(stride=(2, 2)), ValueError, r"SparseConv3d: stride must have 3 entries"),
    (dict(padding="1"), TypeError, r"SparseConv3d: padding must be an int or a sequence of 3 ints, got '1'"),
    (dict(groups=2), ValueError, "SparseConv3d: groups=2 must divide in_channels=3 and out_channels=4"),
])
def test_sparse_conv_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparseConv3d(3, 4, 3, **kwargs)
