"""SpatiallySeparableConv2d: parity with k x 1 then 1 x k F.conv2d and with the single composed k x k
kernel (outputs and gradients), engine == native, gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irregconv.nn.dense import SpatiallySeparableConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


@pytest.mark.parametrize("kwargs", [dict(), dict(kernel_size=5, stride=2, bias=True), dict(mid_channels=2),
                                    dict(activation=nn.ReLU())])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(kwargs, device):
    torch.manual_seed(0)
    layer = SpatiallySeparableConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    v, h = layer.vertical, layer.horizontal
    k, s = v.kernel_size[0], v.stride[0]
    act = torch.relu if "activation" in kwargs else (lambda t: t)
    ref = F.conv2d(act(F.conv2d(x, v.weight, v.bias, (s, 1), (k // 2, 0))), h.weight, h.bias, (1, s), (0, k // 2))
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("stride", [1, 2])
def test_equals_composed_single_kernel(stride):
    torch.manual_seed(1)
    layer = SpatiallySeparableConv2d(3, 5, stride=stride, mid_channels=2).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    kernel = torch.einsum("omj,mci->ocij", layer.horizontal.weight[:, :, 0], layer.vertical.weight[..., 0])
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel, None, stride, 1), rtol=1e-7, atol=1e-9)


def test_engine_equals_native(assert_engine_equals_native):
    torch.manual_seed(2)
    assert_engine_equals_native(SpatiallySeparableConv2d, 4, 6, stride=2, bias=True, input_shape=(2, 4, 5, 6))


def test_gradcheck():
    torch.manual_seed(3)
    layer = SpatiallySeparableConv2d(2, 3, activation=nn.Tanh(), backend="engine").double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c, h, w = 3, 16, 9, 7
    layer = SpatiallySeparableConv2d(c, c)
    assert layer(torch.randn(2, c, h, w)).shape == (2, c, h, w)
    assert SpatiallySeparableConv2d(c, 8, stride=2)(torch.randn(2, c, h, w)).shape == (2, 8, 5, 4)
    assert repr(layer).startswith("SpatiallySeparableConv2d(\n  16, 16, kernel_size=3, mid_channels=16\n")
    assert layer.num_parameters() == (k + k) * c * c
    assert layer.macs((c, h, w)) == h * w * (k + k) * c * c
    general = SpatiallySeparableConv2d(4, 6, 5, stride=2, mid_channels=3)
    assert general.num_parameters() == 5 * (4 * 3 + 3 * 6)
    assert general.macs((2, 4, h, w)) == 2 * (5 * w * 5 * 4 * 3 + 5 * 4 * 5 * 3 * 6)


def test_bad_arguments():
    with pytest.raises(TypeError, match="SpatiallySeparableConv2d.*kernel_size"):
        SpatiallySeparableConv2d(4, 4, kernel_size=(3, 3))
    with pytest.raises(ValueError, match="SpatiallySeparableConv2d.*mid_channels"):
        SpatiallySeparableConv2d(4, 4, mid_channels=0)
