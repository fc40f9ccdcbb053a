"""OctaveConv2d: the four paths against a composition written independently (reshape-mean pooling,
repeat-interleave upsampling, F.conv2d per path), outputs and gradients; alpha 0/0 equals
F.conv2d; plain-tensor input / output; gradcheck; shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import OctaveConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _pool2(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _up2(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def _reference(conv, x_h, x_l):
    """``Y_H = W_HH * X_H + Up(W_LH * X_L)``, ``Y_L = W_HL * Pool(X_H) + W_LL * X_L`` from weight blocks."""
    oh, ih = conv.out_high, conv.in_high
    w, b = conv.weight, conv.bias
    if conv.stride[0] == 2:
        x_h, x_l = _pool2(x_h), None if x_l is None else _pool2(x_l)
    c = lambda x, w: F.conv2d(x, w, None, 1, conv.padding, conv.dilation)  # noqa: E731
    y_h = c(x_h, w[:oh, :ih]) + (0 if x_l is None else _up2(c(x_l, w[:oh, ih:])))
    if b is not None:
        y_h = y_h + b[:oh, None, None]
    if conv.out_low == 0:
        return (y_h,)
    y_l = c(_pool2(x_h), w[oh:, :ih]) + (0 if x_l is None else c(x_l, w[oh:, ih:]))
    return y_h, y_l if b is None else y_l + b[oh:, None, None]


@pytest.mark.parametrize("alpha_in,alpha_out", [(0.5, 0.5), (0.25, 0.75), (0.0, 0.5), (0.5, 0.0)])
@pytest.mark.parametrize("stride,bias", [(1, False), (2, True)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_four_paths(alpha_in, alpha_out, stride, bias, device):
    conv = OctaveConv2d(8, 8, 3, alpha_in, alpha_out, stride=stride, bias=bias).to(device, torch.float64)
    x_h = torch.randn(2, conv.in_high, 8, 12, device=device, dtype=torch.float64, requires_grad=True)
    x_l = torch.randn(2, conv.in_low, 4, 6, device=device, dtype=torch.float64, requires_grad=True) if conv.in_low else None
    out = conv(x_h if x_l is None else (x_h, x_l))
    out = out if isinstance(out, tuple) else (out,)
    ref = _reference(conv, x_h, x_l)
    inputs = [t for t in (x_h, x_l, *conv.parameters()) if t is not None]
    assert_close_with_grads(out, ref, inputs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("bias", [True, False])
def test_alpha_zero_equals_ordinary_conv(bias):
    conv = OctaveConv2d(4, 6, 3, alpha_in=0.0, alpha_out=0.0, bias=bias).double()
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64)
    out = conv(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, 1, 1), rtol=1e-7, atol=1e-9)


def test_plain_tensor_in_and_out():
    first = OctaveConv2d(4, 8, alpha_in=0.0, alpha_out=0.5)
    last = OctaveConv2d(8, 6, alpha_in=0.5, alpha_out=0.0)
    y = first(torch.randn(2, 4, 8, 8))
    assert isinstance(y, tuple) and y[0].shape == (2, 4, 8, 8) and y[1].shape == (2, 4, 4, 4)
    z = last(y)
    assert isinstance(z, torch.Tensor) and z.shape == (2, 6, 8, 8)


def test_gradcheck():
    conv = OctaveConv2d(4, 4, 3, bias=True).double()
    x_h = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    x_l = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, l: conv((h, l)), (x_h, x_l))


def test_shape_repr_and_counts():
    conv = OctaveConv2d(16, 32)
    y_h, y_l = conv((torch.randn(2, 8, 12, 10), torch.randn(2, 8, 6, 5)))
    assert y_h.shape == (2, 16, 12, 10) and y_l.shape == (2, 16, 6, 5)
    y_h, y_l = OctaveConv2d(16, 32, stride=2)((torch.randn(2, 8, 12, 8), torch.randn(2, 8, 6, 4)))
    assert y_h.shape == (2, 16, 6, 4) and y_l.shape == (2, 16, 3, 2)
    assert repr(conv) == ("OctaveConv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                          "bias=False, alpha_in=0.5, alpha_out=0.5)")
    assert conv.num_parameters() == 32 * 16 * 9
    # H->H at full resolution, the three other paths at half resolution.
    assert conv.macs((16, 12, 10)) == 9 * (16 * 8 * 120 + (16 * 8 + 32 * 8) * 30)
    assert OctaveConv2d(4, 6, alpha_in=0.0, alpha_out=0.0).macs((4, 8, 8)) == 6 * 4 * 9 * 64


@pytest.mark.parametrize("kwargs,error", [
    (dict(alpha_in=1.0), ValueError), (dict(alpha_out=-0.1), ValueError), (dict(stride=3), ValueError),
    (dict(alpha_in=0.1), ValueError),  # int(0.1 * 4) = 0 low-frequency channels
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="OctaveConv2d"):
        OctaveConv2d(4, 6, **kwargs)


def test_bad_inputs():
    conv = OctaveConv2d(4, 4)
    with pytest.raises(TypeError, match="OctaveConv2d: with alpha_in=0.5 the input is a pair"):
        conv(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="OctaveConv2d: x_low must have shape"):
        conv((torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)))
    with pytest.raises(ValueError, match="H and W even"):
        conv((torch.randn(1, 2, 7, 8), torch.randn(1, 2, 3, 4)))
    with pytest.raises(TypeError, match="with alpha_in=0 the input is one tensor"):
        OctaveConv2d(4, 4, alpha_in=0.0)((torch.randn(1, 4, 8, 8), torch.randn(1, 0, 4, 4)))
