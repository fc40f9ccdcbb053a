"""DepthwiseSeparableConv2d: parity with depthwise + pointwise F.conv2d and with the single composed
kernel (outputs and gradients), engine == native, gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irregconv.nn.dense import DepthwiseSeparableConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


@pytest.mark.parametrize("kwargs", [dict(), dict(kernel_size=5, stride=2, bias=True), dict(dilation=2),
                                    dict(activation=nn.ReLU())])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(kwargs, device):
    torch.manual_seed(0)
    layer = DepthwiseSeparableConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    dw, pw = layer.depthwise, layer.pointwise
    act = torch.relu if "activation" in kwargs else (lambda t: t)
    ref = F.conv2d(act(F.conv2d(x, dw.weight, dw.bias, dw.stride, dw.padding, dw.dilation, 4)), pw.weight, pw.bias)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


def test_equals_composed_single_kernel():
    torch.manual_seed(1)
    layer = DepthwiseSeparableConv2d(3, 5, stride=2).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    # W[o, c] = P[o, c] D[c]: a full conv with a rank-structured kernel
    kernel = layer.pointwise.weight[:, :, 0, 0, None, None] * layer.depthwise.weight[:, 0][None]
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel, None, 2, 1), rtol=1e-7, atol=1e-9)


def test_engine_equals_native(assert_engine_equals_native):
    torch.manual_seed(2)
    assert_engine_equals_native(DepthwiseSeparableConv2d, 4, 6, stride=2, bias=True, input_shape=(2, 4, 5, 6))


def test_gradcheck():
    torch.manual_seed(3)
    layer = DepthwiseSeparableConv2d(2, 3, activation=nn.Tanh(), backend="engine").double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 16, 32, 9, 7
    layer = DepthwiseSeparableConv2d(c_in, c_out)
    assert layer(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert DepthwiseSeparableConv2d(c_in, c_out, stride=2)(torch.randn(2, c_in, h, w)).shape == (2, c_out, 5, 4)
    assert repr(layer).startswith(
        "DepthwiseSeparableConv2d(\n  16, 32, kernel_size=(3, 3)\n  (depthwise): Conv2d(16, 16")
    assert layer.num_parameters() == (k * k + c_out) * c_in
    assert layer.macs((c_in, h, w)) == h * w * (k * k + c_out) * c_in
    assert layer.macs((2, c_in, h, w)) == 2 * h * w * (k * k + c_out) * c_in


def test_bad_arguments():
    with pytest.raises(ValueError, match="DepthwiseSeparableConv2d.*in_channels"):
        DepthwiseSeparableConv2d(0, 4)
    with pytest.raises(ValueError, match="DepthwiseSeparableConv2d.*\\[B, 4, H, W\\]"):
        DepthwiseSeparableConv2d(4, 4)(torch.randn(1, 3, 5, 5))
