"""PixelDifferenceConv2d: each mode against its explicit pixel-difference formula (outputs and
gradients), PiDiNet's reparameterised kernels, gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import PixelDifferenceConv2d
from irregconv.testing import DEVICES, assert_close_with_grads

# ad: each 3x3 tap minus its clockwise ring neighbour (top-left - top, top - top-right, ...), written out
AD_PAIRS = [(0, 1), (1, 2), (2, 5), (3, 0), (4, 4), (5, 8), (6, 3), (7, 6), (8, 7)]
# rd: 5x5 outer ring pixel minus the 3x3 ring pixel on the same ray (flat 5x5 indices)
RD_PAIRS = [(0, 6), (2, 7), (4, 8), (10, 11), (14, 13), (20, 16), (22, 17), (24, 18)]


def _pairs(mode, k):
    if mode == "cv":
        return list(range(k * k)), None
    if mode == "cd":
        return list(range(k * k)), [k * k // 2] * (k * k)
    pairs = AD_PAIRS if mode == "ad" else RD_PAIRS
    return [a for a, _ in pairs], [b for _, b in pairs]


@pytest.mark.parametrize("mode", ["cv", "cd", "ad", "rd"])
@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, bias=True), dict(dilation=2, groups=2)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_difference_formula(mode, kwargs, device, explicit_difference):
    torch.manual_seed(0)
    layer = PixelDifferenceConv2d(4, 6, mode=mode, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    a, b = _pairs(mode, layer.kernel_size[0])
    ref = explicit_difference(x, layer.weight, a, b, 1.0, layer.kernel_size[0], layer.stride, layer.padding,
                              layer.dilation, layer.groups)
    if layer.bias is not None:
        ref = ref + layer.bias.reshape(1, -1, 1, 1)
    out = layer(x)
    assert_close_with_grads(out, ref, [x, *layer.parameters()], rtol=1e-7, atol=1e-9)


def test_cd_with_larger_kernel(explicit_difference):
    torch.manual_seed(1)
    layer = PixelDifferenceConv2d(3, 4, 5, mode="cd").double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    a, b = _pairs("cd", 5)
    torch.testing.assert_close(layer(x), explicit_difference(x, layer.weight, a, b, 1.0, 5, (1, 1), (2, 2), (1, 1), 1),
                               rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", ["cv", "cd", "ad", "rd"])
def test_reparameterised_kernel_as_in_pidinet(mode):
    """PiDiNet's own construction of the single kernel (its ``pdc`` functions), from a 3x3 weight."""
    torch.manual_seed(2)
    layer = PixelDifferenceConv2d(3, 5, mode=mode).double()
    w = layer.weight
    if mode == "cv":
        expected = w.reshape(5, 3, 3, 3)
    elif mode == "cd":
        expected = w.reshape(5, 3, 3, 3).clone()
        expected[:, :, 1, 1] -= w.sum(dim=2)
    elif mode == "ad":
        expected = (w - w[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]]).reshape(5, 3, 3, 3)
    else:
        buffer = w.new_zeros(5, 3, 25)
        buffer[:, :, [0, 2, 4, 10, 14, 20, 22, 24]] = w
        buffer[:, :, [6, 7, 8, 11, 13, 16, 17, 18]] = -w
        expected = buffer.reshape(5, 3, 5, 5)
    torch.testing.assert_close(layer.reparameterised_weight(), expected, rtol=1e-7, atol=1e-9)
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, expected, None, 1, expected.size(-1) // 2), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", ["ad", "rd"])
def test_gradcheck(mode):
    torch.manual_seed(3)
    layer = PixelDifferenceConv2d(2, 2, mode=mode, bias=True).double()
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    c_in, c_out, h, w = 8, 16, 9, 7
    for mode in ("cv", "cd", "ad", "rd"):
        assert PixelDifferenceConv2d(c_in, c_out, mode=mode)(torch.randn(2, c_in, h, w)).shape == (2, c_out, h, w)
    assert repr(PixelDifferenceConv2d(c_in, c_out, mode="ad")) == (
        "PixelDifferenceConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False, mode='ad')")
    assert PixelDifferenceConv2d(c_in, c_out).num_parameters() == 9 * c_in * c_out
    assert PixelDifferenceConv2d(c_in, c_out, mode="rd").num_parameters() == 8 * c_in * c_out
    assert PixelDifferenceConv2d(c_in, c_out).macs((c_in, h, w)) == h * w * 9 * c_in * c_out
    assert PixelDifferenceConv2d(c_in, c_out, mode="rd").macs((c_in, h, w)) == h * w * 25 * c_in * c_out


@pytest.mark.parametrize("kwargs", [dict(mode="xx"), dict(mode="ad", kernel_size=5), dict(kernel_size=2)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="PixelDifferenceConv2d"):
        PixelDifferenceConv2d(4, 6, **kwargs)
