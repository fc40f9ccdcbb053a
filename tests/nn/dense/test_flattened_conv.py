"""FlattenedConv2d: parity with lateral / vertical / horizontal F.conv2d and with the single composed
rank-one kernel (outputs and gradients), engine == native, gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import FlattenedConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


@pytest.mark.parametrize("kwargs", [dict(), dict(kernel_size=5, stride=2, bias=True)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(kwargs, device):
    torch.manual_seed(0)
    layer = FlattenedConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    lat, v, h = layer.lateral, layer.vertical, layer.horizontal
    k, s = v.kernel_size[0], v.stride[0]
    ref = F.conv2d(F.conv2d(F.conv2d(x, lat.weight), v.weight, None, (s, 1), (k // 2, 0), groups=6),
                   h.weight, h.bias, (1, s), (0, k // 2), groups=6)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("stride", [1, 2])
def test_equals_composed_single_kernel(stride):
    torch.manual_seed(1)
    layer = FlattenedConv2d(3, 5, stride=stride).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    lateral, v = layer.lateral.weight[:, :, 0, 0], layer.vertical.weight[:, 0, :, 0]
    h = layer.horizontal.weight[:, 0, 0]
    kernel = torch.einsum("oc,oi,oj->ocij", lateral, v, h)
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel, None, stride, 1), rtol=1e-7, atol=1e-9)


def test_engine_equals_native(assert_engine_equals_native):
    torch.manual_seed(2)
    assert_engine_equals_native(FlattenedConv2d, 4, 6, stride=2, bias=True, input_shape=(2, 4, 5, 6))


def test_gradcheck():
    torch.manual_seed(3)
    layer = FlattenedConv2d(2, 3, bias=True, backend="engine").double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 16, 32, 9, 7
    layer = FlattenedConv2d(c_in, c_out)
    assert layer(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert FlattenedConv2d(c_in, c_out, stride=2)(torch.randn(2, c_in, h, w)).shape == (2, c_out, 5, 4)
    assert repr(layer).startswith("FlattenedConv2d(\n  16, 32, kernel_size=3\n  (lateral): Conv2d(16, 32")
    assert layer.num_parameters() == c_in * c_out + 2 * k * c_out
    assert layer.macs((c_in, h, w)) == h * w * (c_in * c_out + 2 * k * c_out)
    assert FlattenedConv2d(c_in, c_out, stride=2).macs((c_in, h, w)) == (
        h * w * c_in * c_out + 5 * w * k * c_out + 5 * 4 * k * c_out)


def test_bad_arguments():
    with pytest.raises(ValueError, match="FlattenedConv2d.*stride"):
        FlattenedConv2d(4, 4, stride=0)
    with pytest.raises(ValueError, match="FlattenedConv2d.*\\[B, 4, H, W\\]"):
        FlattenedConv2d(4, 4)(torch.randn(1, 4, 5))
