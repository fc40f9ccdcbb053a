"""SparseConvTranspose{1,2,3}d against torch's conv_transpose of the densified input read at the output
sites (output, feature, weight and bias gradients) over kernels, strides, padding, output padding,
dilation, groups and regions; generated sites against a dense occupancy oracle; gradcheck; repr and errors."""
import pytest
import torch

from irregconv.nn import SparseConvTranspose1d, SparseConvTranspose2d, SparseConvTranspose3d
from irregconv.testing import DEVICES, conv_at_sites, reference_output_sites

TRANSPOSE = {1: SparseConvTranspose1d, 2: SparseConvTranspose2d, 3: SparseConvTranspose3d}
SHAPES = {1: (9,), 2: (4, 5), 3: (3, 4, 5)}


def _taps(module):
    return None if module.region.kind == "cube" else module.region.taps


def _check(module, x, check_parity, **tol):
    y = module(x)
    geometry = (module.kernel_size, module.stride, module.padding, module.dilation, _taps(module))
    expected_sites = reference_output_sites(x.coords, x.spatial_shape, x.batch_size, *geometry, transposed=True,
                                            output_padding=module.output_padding)
    torch.testing.assert_close(y.coords, expected_sites.to(y.coords.device), rtol=0, atol=0)
    dense_shape = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op in zip(
        x.spatial_shape, module.kernel_size, module.stride, module.padding, module.dilation, module.output_padding))
    assert y.spatial_shape == dense_shape

    def oracle(feats, weight, bias=None):
        out = conv_at_sites(feats, x.coords, y.coords, weight, x.spatial_shape, x.batch_size, *geometry,
                            transposed=True, output_padding=module.output_padding)
        return out if bias is None else out + bias
    check_parity(module, x, oracle, **tol)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, (3, 1, 1)])
@pytest.mark.parametrize("stride", [1, 2, (2, 1, 1)])
@pytest.mark.parametrize("padding", [0, 1])
def test_sparse_conv_transpose_3d_matches_dense(kernel_size, stride, padding, sparse_input, check_parity):
    x = sparse_input(SHAPES[3], num_sites=10)
    _check(SparseConvTranspose3d(3, 4, kernel_size, stride=stride, padding=padding).double(), x, check_parity)


@pytest.mark.parametrize("kernel_size, stride, padding, output_padding, dilation, groups", [
    (3, 2, 1, 1, 1, 1), (3, 2, 0, (1, 0, 1), 1, 3), (3, 1, 1, 0, 2, 1), (2, 2, 0, 1, 2, "depthwise"),
    ((2, 3, 1), (1, 2, 2), (0, 1, 0), (0, 1, 1), 1, 1),
])
def test_sparse_conv_transpose_3d_output_padding_dilation_groups(kernel_size, stride, padding, output_padding,
                                                                dilation, groups, sparse_input, check_parity):
    c_in, c_out = (6, 6) if groups == "depthwise" else (3, 6)
    groups = c_in if groups == "depthwise" else groups
    x = sparse_input(SHAPES[3], channels=c_in, num_sites=10)
    module = SparseConvTranspose3d(c_in, c_out, kernel_size, stride, padding, dilation, groups=groups,
                                   output_padding=output_padding).double()
    _check(module, x, check_parity)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("kernel_size, stride, padding", [(1, 1, 0), (3, 2, 1), (2, 2, 0)])
def test_sparse_conv_transpose_1d_2d_match_dense(dims, kernel_size, stride, padding, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims], channels=2, num_sites=4 if dims == 1 else 8)
    _check(TRANSPOSE[dims](2, 4, kernel_size, stride=stride, padding=padding).double(), x, check_parity)


@pytest.mark.parametrize("dims", [2, 3])
def test_sparse_conv_transpose_cross_region_matches_masked_dense_kernel(dims, sparse_input, check_parity):
    x = sparse_input(SHAPES[dims], num_sites=8)
    _check(TRANSPOSE[dims](3, 4, 3, stride=2, region="cross", bias=False).double(), x, check_parity)


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_conv_transpose_float32_on_device(device, sparse_input, check_parity):
    x = sparse_input(SHAPES[3], channels=8, num_sites=10, dtype=torch.float32, device=device)
    module = SparseConvTranspose3d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=2).to(device)
    _check(module, x, check_parity, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(stride=2), dict(stride=(2, 1, 1), padding=1, groups=2, region="cross")])
def test_sparse_conv_transpose_gradcheck(kwargs, sparse_input, gradcheck_module):
    x = sparse_input(SHAPES[3], channels=2, num_sites=3)
    gradcheck_module(SparseConvTranspose3d(2, 4, 3, **kwargs).double(), x)


def test_generated_sites_are_cached_per_geometry(sparse_input):
    x = sparse_input(SHAPES[3], num_sites=6)
    up = SparseConvTranspose3d(3, 3, 2, stride=2).double()
    assert up(x).sites is up(x.replace(torch.randn_like(x.feats))).sites and x.sites.cache.builds == 1
    assert up(x).num_sites == 8 * x.num_sites       # kernel 2, stride 2: every input owns a disjoint 2^3 block


def test_sparse_conv_transpose_repr_and_parameter_shapes():
    assert repr(SparseConvTranspose3d(4, 8, 2, stride=2)) == \
        "SparseConvTranspose3d(4, 8, kernel_size=(2, 2, 2), stride=(2, 2, 2))"
    conv = SparseConvTranspose3d(4, 8, 3, stride=2, padding=1, output_padding=1, groups=4, bias=False)
    assert repr(conv) == ("SparseConvTranspose3d(4, 8, kernel_size=(3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1), "
                          "output_padding=(1, 1, 1), groups=4, bias=False)")
    assert conv.weight.shape == (27, 4, 1, 2)


def test_sparse_conv_transpose_bad_input_and_arguments(sparse_input):
    conv = SparseConvTranspose3d(3, 4, 3, stride=2).double()
    with pytest.raises(ValueError, match="SparseConvTranspose3d: in_channels=3 but the input has 2 channels"):
        conv(sparse_input(channels=2))
    with pytest.raises(ValueError, match="SparseConvTranspose3d: expects 3 spatial axes"):
        conv(sparse_input((5, 5)))
    with pytest.raises(ValueError, match="SparseConvTranspose3d: output_padding must be >= 0 on every axis"):
        SparseConvTranspose3d(3, 4, 3, output_padding=-1)
    with pytest.raises(ValueError, match=r"output size on spatial axis 0 would be -3; reduce padding \(2\)"):
        SparseConvTranspose3d(3, 4, 1, padding=2).double()(sparse_input((1, 4, 4), num_sites=2))
