"""DynamicConv2d: per-sample loop parity (outputs and gradients), attention sums to 1, temperature
schedule, gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import DynamicConv2d
from irregconv.nn.dense.dynamic_conv import linear_temperature
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_sample_reference(conv, x):
    """Attention from the paper's formula, then one ``F.conv2d`` per sample with the aggregated kernel."""
    fc1, fc2 = conv.attention[0], conv.attention[2]
    outs = []
    for xb in x:
        z = fc2.weight @ torch.relu(fc1.weight @ xb.mean(dim=(1, 2)) + fc1.bias) + fc2.bias
        pi = torch.exp(z / conv.temperature) / torch.exp(z / conv.temperature).sum()
        weight = sum(pi[k] * conv.weight[k] for k in range(conv.num_kernels))
        bias = None if conv.bias is None else sum(pi[k] * conv.bias[k] for k in range(conv.num_kernels))
        outs.append(F.conv2d(xb[None], weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("groups,stride,bias,temperature", [(1, 1, True, 30.0), (2, 2, False, 1.0)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_sample_loop(groups, stride, bias, temperature, device):
    conv = DynamicConv2d(4, 6, 3, stride=stride, groups=groups, bias=bias, num_kernels=3,
                         temperature=temperature).to(device, torch.float64)
    x = torch.randn(3, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _per_sample_reference(conv, x)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


def test_attention_sums_to_one_and_flattens_with_temperature():
    conv = DynamicConv2d(8, 8, temperature=30.0)
    x = torch.randn(5, 8, 6, 6)
    pi = conv.attention_weights(x)
    assert pi.shape == (5, 4) and bool((pi > 0).all())
    torch.testing.assert_close(pi.sum(dim=1), torch.ones(5))
    conv.temperature = 1.0
    sharp = conv.attention_weights(x)
    assert bool((pi.max(dim=1).values - pi.min(dim=1).values < sharp.max(dim=1).values - sharp.min(dim=1).values).all())


def test_temperature_annealing():
    conv = DynamicConv2d(4, 4, temperature=30.0)
    assert [linear_temperature(e) for e in (0, 5, 10, 20)] == [30.0, 15.5, 1.0, 1.0]
    assert conv.anneal_temperature(5) == 15.5 and conv.temperature == 15.5
    assert conv.anneal_temperature(12) == 1.0
    assert conv.anneal_temperature(0) == 30.0


def test_gradcheck():
    conv = DynamicConv2d(2, 3, 3, num_kernels=2, temperature=2.0).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = DynamicConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert DynamicConv2d(8, 16, stride=2)(torch.randn(1, 8, 9, 7)).shape == (1, 16, 5, 4)
    assert repr(conv).startswith(
        "DynamicConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), num_kernels=4, temperature=30\n")
    hidden = 8 // 4 + 1
    assert conv.num_parameters() == 4 * (16 * 8 * 9 + 16) + (8 * hidden + hidden) + (hidden * 4 + 4)
    assert conv.macs((8, 9, 7)) == 8 * hidden + hidden * 4 + 4 * (16 * 8 * 9 + 16) + 16 * 8 * 9 * 9 * 7


@pytest.mark.parametrize("kwargs,error", [
    (dict(num_kernels=0), ValueError), (dict(temperature=0.0), ValueError),
    (dict(temperature="hot"), TypeError), (dict(reduction=0), ValueError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="DynamicConv2d"):
        DynamicConv2d(4, 6, **kwargs)
