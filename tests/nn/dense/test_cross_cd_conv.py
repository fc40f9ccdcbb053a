"""CrossCDConv2d: parity with the explicit cross central-difference formula (outputs and gradients) and
with its reparameterised single kernel (zero off the cross), gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import CrossCDConv2d
from irregconv.testing import DEVICES, assert_close_with_grads

# the crosses of a 3x3 and a 5x5 kernel, written out (flat C-order tap indices)
CROSSES = {("hv", 3): [1, 3, 4, 5, 7], ("dg", 3): [0, 2, 4, 6, 8],
           ("hv", 5): [2, 7, 10, 11, 12, 13, 14, 17, 22], ("dg", 5): [0, 4, 6, 8, 12, 16, 18, 20, 24]}


@pytest.mark.parametrize("cross", ["hv", "dg"])
@pytest.mark.parametrize("kwargs", [dict(), dict(theta=0.3, stride=2, bias=True), dict(kernel_size=5, dilation=2),
                                    dict(groups=2)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_difference_formula(cross, kwargs, device, explicit_difference):
    torch.manual_seed(0)
    layer = CrossCDConv2d(4, 6, cross=cross, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    k = layer.kernel_size[0]
    taps = CROSSES[cross, k]
    ref = explicit_difference(x, layer.weight, taps, [k * k // 2] * len(taps), layer.theta, k, layer.stride,
                              layer.padding, layer.dilation, layer.groups)
    if layer.bias is not None:
        ref = ref + layer.bias.reshape(1, -1, 1, 1)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cross", ["hv", "dg"])
def test_reparameterised_kernel(cross):
    torch.manual_seed(1)
    layer = CrossCDConv2d(3, 5, cross=cross).double()
    kernel = layer.reparameterised_weight()
    off_cross = [t for t in range(9) if t not in CROSSES[cross, 3]]
    assert (kernel.reshape(5, 3, 9)[:, :, off_cross] == 0).all()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel, None, 1, 1), rtol=1e-7, atol=1e-9)


def test_gradcheck():
    torch.manual_seed(2)
    layer = CrossCDConv2d(2, 3, cross="dg", bias=True).double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 8, 16, 9, 7
    layer = CrossCDConv2d(c_in, c_out)
    assert layer(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert repr(layer) == ("CrossCDConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False, "
                           "theta=0.8, cross='hv')")
    assert layer.num_parameters() == (2 * k - 1) * c_in * c_out
    assert layer.macs((c_in, h, w)) == h * w * k * k * c_in * c_out


@pytest.mark.parametrize("kwargs", [dict(cross="x"), dict(kernel_size=2), dict(theta=-0.1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="CrossCDConv2d"):
        CrossCDConv2d(4, 6, **kwargs)
