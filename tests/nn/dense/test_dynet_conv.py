"""DyNetConv2d: per-sample, per-output-channel loop parity (outputs and gradients), gradcheck,
shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import DyNetConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_channel_reference(conv, x):
    """Coefficients from the paper's formula; every output channel of every sample is its own
    ``F.conv2d`` with that channel's fused kernel."""
    k, c_out = conv.num_kernels, conv.out_channels
    c_out_per_group, c_in_per_group = c_out // conv.groups, conv.in_channels // conv.groups
    outs = []
    for xb in x:
        pi = torch.sigmoid(conv.coefficients.weight @ xb.mean(dim=(1, 2)) + conv.coefficients.bias).reshape(k, c_out)
        channels = []
        for o in range(c_out):
            g = o // c_out_per_group
            weight = sum(pi[i, o] * conv.weight[i, o] for i in range(k))[None]
            bias = None if conv.bias is None else sum(pi[i, o] * conv.bias[i, o] for i in range(k))[None]
            xg = xb[None, g * c_in_per_group:(g + 1) * c_in_per_group]
            channels.append(F.conv2d(xg, weight, bias, conv.stride, conv.padding, conv.dilation))
        outs.append(torch.cat(channels, dim=1))
    return torch.cat(outs)


@pytest.mark.parametrize("groups,stride,bias", [(1, 1, True), (2, 2, False)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_channel_loop(groups, stride, bias, device):
    conv = DyNetConv2d(4, 6, 3, stride=stride, groups=groups, bias=bias, num_kernels=3).to(device, torch.float64)
    x = torch.randn(2, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _per_channel_reference(conv, x)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


def test_gradcheck():
    conv = DyNetConv2d(2, 3, 3, num_kernels=2).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = DyNetConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert conv.fusion_coefficients(torch.randn(2, 8, 9, 7)).shape == (2, 4, 16)
    assert repr(conv).startswith(
        "DyNetConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), num_kernels=4\n")
    assert conv.num_parameters() == 4 * (16 * 8 * 9 + 16) + 8 * 64 + 64
    assert conv.macs((8, 9, 7)) == 8 * 64 + 4 * (16 * 8 * 9 + 16) + 16 * 8 * 9 * 9 * 7


@pytest.mark.parametrize("kwargs,error", [(dict(num_kernels=0), ValueError), (dict(stride=(1, 0)), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="DyNetConv2d"):
        DyNetConv2d(4, 6, **kwargs)
