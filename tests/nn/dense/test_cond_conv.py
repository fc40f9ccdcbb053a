"""CondConv2d: both strategies against a per-sample loop (outputs and gradients), gradcheck, shapes."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import CondConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_sample_reference(conv, x):
    """Routing from the paper's formula, then one ``F.conv2d`` per sample with its mixed kernel."""
    outs = []
    for xb in x:
        r = torch.sigmoid(conv.routing.weight @ xb.mean(dim=(1, 2)) + conv.routing.bias)
        weight = sum(r[e] * conv.weight[e] for e in range(conv.num_experts))
        bias = None if conv.bias is None else sum(r[e] * conv.bias[e] for e in range(conv.num_experts))
        outs.append(F.conv2d(xb[None], weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    return torch.cat(outs)


@pytest.mark.parametrize("strategy", ["kernel", "output"])
@pytest.mark.parametrize("groups,stride,dilation,bias", [(1, 1, 1, True), (2, 2, 1, False), (2, 1, 2, True)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_sample_loop(strategy, groups, stride, dilation, bias, device):
    conv = CondConv2d(4, 6, 3, stride=stride, dilation=dilation, groups=groups, bias=bias,
                      num_experts=3, strategy=strategy).to(device, torch.float64)
    x = torch.randn(3, 4, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    ref = _per_sample_reference(conv, x)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("groups", [1, 2])
def test_kernel_mixing_equals_output_mixing(groups):
    conv = CondConv2d(4, 6, 3, groups=groups, num_experts=5).double()
    x = torch.randn(4, 4, 6, 6, dtype=torch.float64)
    kernel = conv(x)
    conv.strategy = "output"
    torch.testing.assert_close(conv(x), kernel, rtol=1e-7, atol=1e-9)


def test_auto_strategy_follows_expert_count():
    assert CondConv2d(4, 4, num_experts=4).resolved_strategy == "output"
    assert CondConv2d(4, 4, num_experts=5).resolved_strategy == "kernel"
    assert CondConv2d(4, 4, num_experts=8, strategy="output").resolved_strategy == "output"


@pytest.mark.parametrize("strategy", ["kernel", "output"])
def test_gradcheck(strategy):
    conv = CondConv2d(2, 3, 3, num_experts=2, strategy=strategy).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = CondConv2d(8, 16)
    assert conv(torch.randn(2, 8, 9, 7)).shape == (2, 16, 9, 7)
    assert CondConv2d(8, 16, stride=2)(torch.randn(1, 8, 9, 7)).shape == (1, 16, 5, 4)
    assert repr(conv) == ("CondConv2d(\n  8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), num_experts=4\n"
                          "  (routing): Linear(in_features=8, out_features=4, bias=True)\n)")
    assert conv.num_parameters() == 4 * 16 * 8 * 9 + 4 * 16 + 8 * 4 + 4
    conv_macs = 16 * 8 * 9 * 9 * 7
    assert conv.macs((8, 9, 7)) == 8 * 4 + 4 * (conv_macs + 16 * 9 * 7)
    conv.strategy = "kernel"
    assert conv.macs((8, 9, 7)) == 8 * 4 + 4 * 16 * 8 * 9 + 4 * 16 + conv_macs


@pytest.mark.parametrize("kwargs,error", [
    (dict(num_experts=0), ValueError), (dict(strategy="fast"), ValueError),
    (dict(groups=3), ValueError), (dict(kernel_size=2.5), TypeError),
])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error, match="CondConv2d"):
        CondConv2d(4, 6, **kwargs)


def test_bad_input():
    with pytest.raises(ValueError, match=r"CondConv2d: input must have shape \[B, 4, H, W\]"):
        CondConv2d(4, 6)(torch.randn(2, 3, 5, 5))
