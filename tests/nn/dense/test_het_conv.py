"""HetConv2d: equals F.conv2d with the masked dense kernel assembled by a loop (outputs and
gradients), gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import HetConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _masked_kernel(conv):
    """Filter o: k x k kernels on the channels c with c % p == o % p, 1x1 (centre tap) elsewhere."""
    k, p = conv.kernel_size[0], conv.p
    weight = torch.zeros(conv.out_channels, conv.in_channels, k, k, dtype=conv.weight_spatial.dtype,
                         device=conv.weight_spatial.device)
    for o in range(conv.out_channels):
        spatial, point = 0, 0
        for c in range(conv.in_channels):
            if c % p == o % p:
                weight[o, c] = conv.weight_spatial[o, spatial]
                spatial += 1
            else:
                weight[o, c, k // 2, k // 2] = conv.weight_point[o, point]
                point += 1
    return weight


@pytest.mark.parametrize("p,kernel_size,stride,bias", [(4, 3, 1, False), (2, 5, 2, True), (1, 3, 1, True)])
@pytest.mark.parametrize("device", DEVICES)
def test_equals_masked_dense_kernel(p, kernel_size, stride, bias, device):
    conv = HetConv2d(8, 4, kernel_size, p=p, stride=stride, bias=bias).to(device, torch.float64)
    x = torch.randn(2, 8, 7, 9, device=device, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    ref = F.conv2d(x, _masked_kernel(conv), conv.bias, stride, kernel_size // 2)
    # With p = 1 the point part is empty ([C_out, 0]): its gradient is an empty tensor on both sides.
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9, ref_allow_unused=True)
    torch.testing.assert_close(conv.dense_weight(), _masked_kernel(conv), rtol=0, atol=0)


def test_pattern_shifts_by_one_channel_per_filter():
    mask = HetConv2d(8, 4, p=4).dense_weight().detach()[:, :, 0, 0] != 0
    assert mask.tolist() == [[c % 4 == o for c in range(8)] for o in range(4)]


def test_gradcheck():
    conv = HetConv2d(4, 2, p=2, bias=True).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = HetConv2d(16, 32)
    assert conv(torch.randn(2, 16, 9, 7)).shape == (2, 32, 9, 7)
    assert HetConv2d(16, 32, stride=2)(torch.randn(2, 16, 9, 7)).shape == (2, 32, 5, 4)
    assert repr(conv) == "HetConv2d(16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False, p=4)"
    assert conv.num_parameters() == 32 * (4 * 9 + 12)
    assert conv.macs((16, 9, 7)) == 9 * 7 * (32 * 4 * 9 + 32 * 16)


@pytest.mark.parametrize("args,kwargs,error", [
    ((6, 8), {}, ValueError), ((8, 6), {}, ValueError), ((8, 8), dict(kernel_size=2), ValueError),
    ((8, 8), dict(p=0), ValueError),
])
def test_bad_arguments(args, kwargs, error):
    with pytest.raises(error, match="HetConv2d"):
        HetConv2d(*args, **kwargs)
