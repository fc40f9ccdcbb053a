"""SparseDepthwiseSeparableConv3d against its dense counterpart: F.conv3d depthwise (groups = C_in, padding
(k // 2) * dilation) then a 1x1x1 F.conv3d, on the densified input, read at the active sites (output and
gradients of features and both weights and the bias); equality with the two SubMConv3d it is made of;
gradcheck; parameter count; shapes, repr and errors."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn import SparseDepthwiseSeparableConv3d, SubMConv3d
from irregconv.testing import DEVICES, densify, values_at, weight_to_torch


def _dense_reference(module, x):
    dw, pw = module.depthwise, module.pointwise
    taps = None if dw.region.kind == "cube" else dw.region.taps
    padding = tuple(k // 2 * d for k, d in zip(dw.kernel_size, dw.dilation))

    def run(feats, dw_weight, pw_weight, pw_bias=None):
        grid = densify(feats, x.coords, x.spatial_shape, x.batch_size)
        grid = F.conv3d(grid, weight_to_torch(dw_weight, dw.kernel_size, taps), None, 1, padding, dw.dilation,
                        groups=module.in_channels)
        grid = F.conv3d(grid, weight_to_torch(pw_weight, (1, 1, 1)), pw_bias)
        return values_at(grid, x.coords)
    return run


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), ((3, 1, 1), 1), (3, 2), (5, 1), (1, 1)])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_separable_matches_dense(kernel_size, dilation, depth_multiplier, bias, sparse_input,
                                           check_parity):
    x = sparse_input(channels=3)
    module = SparseDepthwiseSeparableConv3d(3, 5, kernel_size, dilation, depth_multiplier, bias).double()
    check_parity(module, x, _dense_reference(module, x))


def test_depthwise_separable_cross_region(sparse_input, check_parity):
    x = sparse_input(channels=3)
    module = SparseDepthwiseSeparableConv3d(3, 4, 3, region="cross").double()
    assert module.depthwise.weight.shape == (7, 3, 1, 1)
    check_parity(module, x, _dense_reference(module, x))


@pytest.mark.parametrize("device", DEVICES)
def test_depthwise_separable_float32_on_device(device, sparse_input, check_parity):
    x = sparse_input(channels=8, num_sites=40, dtype=torch.float32, device=device)
    module = SparseDepthwiseSeparableConv3d(8, 16, 3, depth_multiplier=2).to(device)
    check_parity(module, x, _dense_reference(module, x), rtol=1e-4, atol=1e-5)


def test_depthwise_separable_gradcheck(sparse_input, gradcheck_module):
    x = sparse_input(channels=2, num_sites=5)
    gradcheck_module(SparseDepthwiseSeparableConv3d(2, 3, 3, depth_multiplier=2).double(), x)


def test_depthwise_separable_is_its_two_submanifold_convs_and_shares_their_rulebooks(sparse_input):
    x = sparse_input(channels=4)
    module = SparseDepthwiseSeparableConv3d(4, 6).double()
    depthwise = SubMConv3d(4, 4, 3, groups=4, bias=False).double()
    pointwise = SubMConv3d(4, 6, 1).double()
    depthwise.load_state_dict(module.depthwise.state_dict())
    pointwise.load_state_dict(module.pointwise.state_dict())
    out = module(x)
    assert out.sites is x.sites and out.feats.shape == (x.num_sites, 6)
    torch.testing.assert_close(out.feats, pointwise(depthwise(x)).feats, rtol=0, atol=0)
    assert x.sites.cache.builds == 2                      # the 3x3x3 and the 1x1x1 rulebooks, built once


def test_depthwise_separable_parameters_shape_and_repr():
    module = SparseDepthwiseSeparableConv3d(8, 16, depth_multiplier=2)
    assert module.depthwise.weight.shape == (27, 8, 1, 2) and module.depthwise.bias is None
    assert module.pointwise.weight.shape == (1, 16, 16) and module.pointwise.bias.shape == (16,)
    assert sum(p.numel() for p in module.parameters()) == 27 * 8 * 2 + 16 * 16 + 16
    assert module.extra_repr() == "8, 16, kernel_size=(3, 3, 3), depth_multiplier=2"
    assert repr(module).splitlines()[2] == ("  (depthwise): SubMConv3d(8, 16, kernel_size=(3, 3, 3), groups=8, "
                                            "bias=False)")
    other = SparseDepthwiseSeparableConv3d(4, 4, (3, 1, 1), dilation=2, bias=False, region="cross")
    assert other.extra_repr() == "4, 4, kernel_size=(3, 1, 1), dilation=(2, 2, 2), region=cross, bias=False"


def test_depthwise_separable_errors(sparse_input):
    module = SparseDepthwiseSeparableConv3d(3, 4).double()
    with pytest.raises(ValueError, match="SparseDepthwiseSeparableConv3d: in_channels=3 but the input has 2"):
        module(sparse_input(channels=2))
    with pytest.raises(ValueError, match="SparseDepthwiseSeparableConv3d: expects 3 spatial axes"):
        module(sparse_input((5, 5)))
    with pytest.raises(TypeError, match="SparseDepthwiseSeparableConv3d: depth_multiplier must be an int, got 1.5"):
        SparseDepthwiseSeparableConv3d(3, 4, depth_multiplier=1.5)
    with pytest.raises(ValueError, match="SparseDepthwiseSeparableConv3d: out_channels must be an int >= 1, got 0"):
        SparseDepthwiseSeparableConv3d(3, 0)
