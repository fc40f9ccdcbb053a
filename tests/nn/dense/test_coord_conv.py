"""CoordConv2d: parity with F.conv2d on the input concatenated with explicitly built coordinate
channels (outputs and gradients), zero coordinate weights == plain conv, engine == native, gradcheck,
shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import CoordConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _coords(batch, height, width, with_r, device):
    """Coordinate channels written out element by element."""
    channels = torch.zeros(batch, 3 if with_r else 2, height, width, dtype=torch.float64, device=device)
    for i in range(height):
        for j in range(width):
            y = 2 * i / (height - 1) - 1 if height > 1 else 0.0
            x = 2 * j / (width - 1) - 1 if width > 1 else 0.0
            channels[:, 0, i, j], channels[:, 1, i, j] = y, x
            if with_r:
                channels[:, 2, i, j] = (y * y + x * x) ** 0.5
    return channels


@pytest.mark.parametrize("with_r", [False, True])
@pytest.mark.parametrize("kwargs,size", [(dict(), (5, 6)), (dict(stride=2, kernel_size=5), (7, 4)),
                                         (dict(dilation=2, bias=False), (1, 5))])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(with_r, kwargs, size, device):
    torch.manual_seed(0)
    layer = CoordConv2d(3, 4, with_r=with_r, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 3, *size, device=device, dtype=torch.float64, requires_grad=True)
    conv = layer.conv
    ref = F.conv2d(torch.cat([x, _coords(2, *size, with_r, device)], 1), conv.weight, conv.bias, conv.stride,
                   conv.padding, conv.dilation)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


def test_zero_coordinate_weights_give_plain_conv():
    torch.manual_seed(1)
    layer = CoordConv2d(3, 4, with_r=True).double()
    with torch.no_grad():
        layer.conv.weight[:, 3:] = 0
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.conv.weight[:, :3], layer.conv.bias, 1, 1),
                               rtol=1e-7, atol=1e-9)


def test_engine_equals_native(assert_engine_equals_native):
    torch.manual_seed(2)
    assert_engine_equals_native(CoordConv2d, 3, 4, with_r=True, stride=2, input_shape=(2, 3, 5, 6))


def test_gradcheck():
    torch.manual_seed(3)
    layer = CoordConv2d(2, 2, with_r=True, backend="engine").double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 8, 16, 9, 7
    assert CoordConv2d(c_in, c_out)(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert repr(CoordConv2d(c_in, c_out, with_r=True)).startswith(
        "CoordConv2d(\n  8, 16, with_r=True\n  (conv): Conv2d(11, 16")
    assert CoordConv2d(c_in, c_out).num_parameters() == k * k * (c_in + 2) * c_out + c_out
    assert CoordConv2d(c_in, c_out, with_r=True).macs((2, c_in, h, w)) == 2 * h * w * k * k * (c_in + 3) * c_out


def test_bad_input():
    with pytest.raises(ValueError, match="CoordConv2d.*\\[B, 3, H, W\\]"):
        CoordConv2d(3, 4)(torch.randn(1, 5, 4, 4))
