"""ICConv2d: equals one F.conv2d with every channel's kernel spread into a large zero kernel at its
own dilation (outputs and gradients), gradcheck, shapes and counts, pattern validation."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import ICConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _spread_kernel(conv):
    """Each output channel's k x k taps placed at its own (d_h, d_w) spacing inside a kernel of size
    d_max (k - 1) + 1, zeros elsewhere: one ordinary conv with padding d_max (k - 1) / 2."""
    k = conv.kernel_size[0]
    d_max = int(conv.dilations.max())
    size = d_max * (k - 1) + 1
    centre = size // 2
    big = conv.weight.new_zeros(conv.out_channels, conv.in_channels, size, size)
    for o, (dh, dw) in enumerate(conv.dilations.tolist()):
        for u in range(k):
            for v in range(k):
                big[o, :, centre + (u - k // 2) * dh, centre + (v - k // 2) * dw] = conv.weight[o, :, u, v]
    return big, d_max * (k // 2)


@pytest.mark.parametrize("pattern,kernel_size,stride,bias", [
    (None, 3, 1, False), ({(1, 3): 2, (2, 1): 1, (3, 2): 2}, 3, 2, True), ({(2, 2): 5}, 5, 1, True),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_spread_kernel(pattern, kernel_size, stride, bias, device):
    conv = ICConv2d(3, 5, kernel_size, pattern, stride, bias).to(device, torch.float64)
    x = torch.randn(2, 3, 9, 8, device=device, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    big, padding = _spread_kernel(conv)
    ref = F.conv2d(x, big, conv.bias, stride, padding)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


def test_default_pattern_and_dilations():
    conv = ICConv2d(4, 6)
    assert conv.pattern == {(1, 1): 2, (1, 2): 2, (2, 1): 1, (2, 2): 1}
    assert conv.dilations.tolist() == [[1, 1], [1, 1], [1, 2], [1, 2], [2, 1], [2, 2]]
    assert ICConv2d(4, 2).pattern == {(1, 1): 1, (1, 2): 1}


def test_all_ones_pattern_is_plain_conv():
    conv = ICConv2d(3, 4, pattern={(1, 1): 4}, bias=True).double()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, 1, 1), rtol=1e-7, atol=1e-9)


def test_gradcheck():
    conv = ICConv2d(2, 3, pattern={(1, 2): 2, (2, 1): 1}, bias=True).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = ICConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert ICConv2d(8, 16, stride=2)(torch.randn(2, 8, 9, 7)).shape == (2, 16, 5, 4)
    assert repr(conv) == ("ICConv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), bias=False, "
                          "pattern={(1, 1): 4, (1, 2): 4, (2, 1): 4, (2, 2): 4})")
    assert conv.num_parameters() == 16 * 8 * 9
    assert conv.macs((8, 9, 7)) == 63 * 16 * 8 * 9


@pytest.mark.parametrize("kwargs,error", [
    (dict(pattern={(1, 1): 3}), ValueError), (dict(pattern={(0, 1): 4}), ValueError),
    (dict(pattern=[(1, 1)]), TypeError), (dict(kernel_size=2), ValueError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="ICConv2d"):
        ICConv2d(4, 4, **kwargs)
