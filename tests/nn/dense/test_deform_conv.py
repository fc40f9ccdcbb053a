"""DeformConv2d: zero offsets == F.conv2d, unit masks == v1, a naive per-pixel loop with random offsets
and masks (outputs and gradients), float64 gradcheck including offsets and masks, shapes, repr, counts."""
import math

import pytest
import torch
import torch.nn.functional as F

from irregconv.functional.deform_conv import deform_conv2d
from irregconv.nn.dense import DeformConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _bilinear(image, py, px):
    """Bilinear sample of a ``[H, W]`` image at one real position, zero outside."""
    height, width = image.shape
    y0, x0 = math.floor(py.item()), math.floor(px.item())
    ly, lx = py - y0, px - x0
    value = image.new_zeros(())
    for yc, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xc, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yc < height and 0 <= xc < width:
                value = value + wy * wx * image[yc, xc]
    return value


def _naive(x, offset, weight, bias, stride, padding, dilation, groups, mask):
    """One output value at a time: sum over input channels and taps of mask * weight * sample."""
    batch, c_in, _, _ = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    taps = kh * kw
    h_out, w_out = offset.shape[2:]
    per_offset_group = c_in // (offset.size(1) // (2 * taps))
    out = []
    for b in range(batch):
        for o in range(c_out):
            g = o // (c_out // groups)
            for i in range(h_out):
                for j in range(w_out):
                    acc = bias[o] if bias is not None else x.new_zeros(())
                    for cl in range(c_per_group):
                        c = g * c_per_group + cl
                        gd = c // per_offset_group
                        for u in range(kh):
                            for v in range(kw):
                                k = gd * taps + u * kw + v
                                py = i * stride - padding + u * dilation + offset[b, 2 * k, i, j]
                                px = j * stride - padding + v * dilation + offset[b, 2 * k + 1, i, j]
                                m = mask[b, k, i, j] if mask is not None else 1
                                acc = acc + m * weight[o, cl, u, v] * _bilinear(x[b, c], py, px)
                    out.append(acc)
    return torch.stack(out).reshape(batch, c_out, h_out, w_out)


@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, dilation=2), dict(groups=2, kernel_size=(3, 1)),
                                    dict(bias=False, padding=0, kernel_size=2)])
@pytest.mark.parametrize("device", DEVICES)
def test_zero_offsets_equal_ordinary_conv(kwargs, device):
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, **kwargs).to(device, torch.float64)
    x = torch.randn(2, 4, 6, 7, device=device, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    ref = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    inputs = [x, layer.weight] + ([layer.bias] if layer.bias is not None else [])
    assert_close_with_grads(out, ref, inputs, rtol=1e-7, atol=1e-9)


def test_modulated_starts_at_half_masks():
    torch.manual_seed(1)
    layer = DeformConv2d(3, 4, modulated=True).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), 0.5 * F.conv2d(x, layer.weight, None, 1, 1) + layer.bias.reshape(1, -1, 1, 1),
                               rtol=1e-7, atol=1e-9)


def _random_inputs(offset_groups, h_out, w_out, taps=9):
    """Offsets of a few pixels (almost surely not integers, where bilinear sampling has kinks) and masks."""
    offset = 1.5 * torch.randn(1, 2 * offset_groups * taps, h_out, w_out, dtype=torch.float64)
    mask = torch.rand(1, offset_groups * taps, h_out, w_out, dtype=torch.float64)
    return offset, mask


def test_unit_masks_equal_v1():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    weight, bias = torch.randn(3, 4, 3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    offset = 1.5 * torch.randn(2, 2 * 2 * 9, 5, 6, dtype=torch.float64)
    v1 = deform_conv2d(x, offset, weight, bias, (1, 1), (1, 1), (1, 1))
    v2 = deform_conv2d(x, offset, weight, bias, (1, 1), (1, 1), (1, 1), mask=torch.ones(2, 2 * 9, 5, 6,
                                                                                        dtype=torch.float64))
    torch.testing.assert_close(v2, v1, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("groups,offset_groups,stride,dilation", [(1, 1, 1, 1), (2, 2, 2, 1), (1, 2, 1, 2)])
def test_naive_loop_with_random_offsets(modulated, groups, offset_groups, stride, dilation):
    torch.manual_seed(3)
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 4 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    h_out, w_out = (5 + 2 * dilation - 2 * dilation - 1) // stride + 1, (6 - 1) // stride + 1
    offset, mask = _random_inputs(offset_groups, h_out, w_out)
    offset.requires_grad_(True)
    mask = mask.requires_grad_(True) if modulated else None
    args = (x, offset, weight, bias, stride, dilation, dilation, groups, mask)
    out = deform_conv2d(x, offset, weight, bias, (stride,) * 2, (dilation,) * 2, (dilation,) * 2, groups, mask)
    ref = _naive(*args)
    inputs = [t for t in (x, offset, weight, bias, mask) if t is not None]
    assert_close_with_grads(out, ref, inputs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("modulated", [False, True])
def test_gradcheck_including_offsets(modulated):
    torch.manual_seed(4)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    offset, mask = _random_inputs(1, 4, 4)
    offset.requires_grad_(True)
    mask = mask.requires_grad_(True) if modulated else None

    def fn(x, offset, weight, bias, *mask):
        return deform_conv2d(x, offset, weight, bias, (1, 1), (1, 1), (1, 1), 1, mask[0] if mask else None)

    assert torch.autograd.gradcheck(fn, (x, offset, weight, bias) + ((mask,) if modulated else ()))


def test_gradcheck_module_with_predicted_offsets():
    torch.manual_seed(5)
    layer = DeformConv2d(2, 2, modulated=True).double()
    with torch.no_grad():
        layer.offset_conv.weight.normal_(0, 0.3)
        layer.offset_conv.bias.uniform_(-0.7, 0.7)
    assert torch.autograd.gradcheck(layer, (torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c_in, c_out, h, w = 3, 8, 16, 9, 7
    x = torch.randn(2, c_in, h, w)
    assert DeformConv2d(c_in, c_out)(x).shape == (2, c_out, h, w)
    assert DeformConv2d(c_in, c_out, stride=2, modulated=True)(x).shape == (2, c_out, 5, 4)
    assert repr(DeformConv2d(c_in, c_out, offset_groups=2, modulated=True)).startswith(
        "DeformConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), offset_groups=2, modulated=True\n")
    taps = k * k
    v1, v2 = DeformConv2d(c_in, c_out), DeformConv2d(c_in, c_out, modulated=True, groups=2)
    assert v1.num_parameters() == taps * c_in * c_out + c_out + 2 * taps * (taps * c_in + 1)
    assert v2.num_parameters() == taps * c_in * c_out // 2 + c_out + 3 * taps * (taps * c_in + 1)
    assert v1.macs((c_in, h, w)) == h * w * (2 * taps * taps * c_in + 4 * taps * c_in + taps * c_in * c_out)
    assert v2.macs((2, c_in, h, w)) == 2 * h * w * (3 * taps * taps * c_in + 5 * taps * c_in
                                                    + taps * c_in * c_out // 2)


@pytest.mark.parametrize("kwargs", [dict(offset_groups=3), dict(groups=3), dict(kernel_size=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="DeformConv2d"):
        DeformConv2d(4, 6, **kwargs)
