"""CDConv2d: parity with the explicit central-difference formula (theta-blend of vanilla and difference
terms, outputs and gradients) and with its reparameterised single kernel, theta 0 == F.conv2d,
gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import CDConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


@pytest.mark.parametrize("kwargs", [dict(), dict(theta=0.3, stride=2, bias=True), dict(kernel_size=5, dilation=2),
                                    dict(groups=2, theta=1.0)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_difference_formula(kwargs, device, explicit_difference):
    torch.manual_seed(0)
    layer = CDConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    k, theta = layer.kernel_size[0], layer.theta
    taps = range(k * k)
    centre = [k * k // 2] * (k * k)
    geometry = (k, layer.stride, layer.padding, layer.dilation, layer.groups)
    # theta * sum W (x_k - x_c) + (1 - theta) * sum W x_k, written as in the paper
    ref = (theta * explicit_difference(x, layer.weight, taps, centre, 1.0, *geometry)
           + (1 - theta) * explicit_difference(x, layer.weight, taps, None, 0.0, *geometry))
    if layer.bias is not None:
        ref = ref + layer.bias.reshape(1, -1, 1, 1)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


def test_reparameterised_kernel_and_theta_zero():
    torch.manual_seed(1)
    layer = CDConv2d(3, 5, theta=0.7).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = layer.weight.reshape(5, 3, 3, 3)
    # vanilla conv minus theta * (1x1 conv of the centre pixel with the summed kernel), as in the paper's code
    two_convs = F.conv2d(x, w, None, 1, 1) - 0.7 * F.conv2d(x, w.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(layer(x), two_convs, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.reparameterised_weight(), None, 1, 1), rtol=1e-7,
                               atol=1e-9)
    vanilla = CDConv2d(3, 5, theta=0.0).double()
    torch.testing.assert_close(vanilla(x), F.conv2d(x, vanilla.weight.reshape(5, 3, 3, 3), None, 1, 1), rtol=1e-7,
                               atol=1e-9)


def test_gradcheck():
    torch.manual_seed(2)
    layer = CDConv2d(2, 3, bias=True).double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 8, 16, 9, 7
    layer = CDConv2d(c_in, c_out)
    assert layer(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert CDConv2d(c_in, c_out, stride=2)(torch.randn(2, c_in, h, w)).shape == (2, c_out, 5, 4)
    assert repr(layer) == "CDConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False, theta=0.7)"
    assert layer.num_parameters() == k * k * c_in * c_out
    assert CDConv2d(c_in, c_out, groups=4).num_parameters() == k * k * c_in * c_out // 4
    assert layer.macs((2, c_in, h, w)) == 2 * h * w * k * k * c_in * c_out


@pytest.mark.parametrize("kwargs", [dict(theta=1.5), dict(kernel_size=4), dict(groups=3)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="CDConv2d"):
        CDConv2d(4, 6, **kwargs)
