"""SplitAttentionConv2d and ResNeStBottleneck: parity with a per-cardinal-group, per-split
composition of torch.nn.functional calls (train and eval; outputs and gradients), attention sums to
1 over the splits, gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import ResNeStBottleneck, SplitAttentionConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _split_attention(m, x, batch_norm):
    """The paper's Fig. 2, one cardinal group at a time: R split convs, their sum, GAP, a two-layer
    MLP, softmax over the R splits per channel, weighted sum. Channel positions follow ResNeSt's code."""
    K, R, C = m.cardinality, m.radix, m.out_channels
    u = F.relu(batch_norm(F.conv2d(x, m.conv.weight, m.conv.bias, m.stride, m.padding, m.dilation, K * R),
                          m.bn0, m.training))
    splits = [u[:, r * C:(r + 1) * C] for r in range(R)]
    gap = sum(splits).mean(dim=(2, 3))  # [B, C]
    c_k, a_k = C // K, m.fc1.out_channels // K
    outs = []
    for k in range(K):
        hidden = F.linear(gap[:, k * c_k:(k + 1) * c_k], m.fc1.weight[k * a_k:(k + 1) * a_k, :, 0, 0],
                          m.fc1.bias[k * a_k:(k + 1) * a_k])
        hidden = F.relu(batch_norm(hidden[:, :, None, None], _BatchNormSlice(m.bn1, k * a_k, (k + 1) * a_k), m.training))
        rows = slice(k * R * c_k, (k + 1) * R * c_k)  # fc2's group k: R splits of this group's channels
        logits = F.linear(hidden[:, :, 0, 0], m.fc2.weight[rows, :, 0, 0], m.fc2.bias[rows]).reshape(-1, R, c_k)
        att = torch.softmax(logits, dim=1) if R > 1 else torch.sigmoid(logits)
        outs.append(sum(att[:, r, :, None, None] * splits[r][:, k * c_k:(k + 1) * c_k] for r in range(R)))
    return torch.cat(outs, dim=1)


class _BatchNormSlice:
    """A view of channels ``start:end`` of a batch norm, for the functional reference."""

    def __init__(self, bn, start, end):
        self.weight, self.bias = bn.weight[start:end], bn.bias[start:end]
        self.running_mean, self.running_var = bn.running_mean[start:end], bn.running_var[start:end]
        self.eps = bn.eps


def _bottleneck(block, x, batch_norm):
    train = block.training
    out = F.relu(batch_norm(F.conv2d(x, block.conv1.weight), block.bn1, train))
    out = _split_attention(block.splat, out, batch_norm)
    if block.stride > 1:
        out = F.avg_pool2d(out, 3, block.stride, 1)
    out = batch_norm(F.conv2d(out, block.conv3.weight), block.bn3, train)
    if block.shortcut is None:
        return F.relu(out + x)
    short = F.avg_pool2d(x, block.stride, block.stride, ceil_mode=True, count_include_pad=False)
    return F.relu(out + batch_norm(F.conv2d(short, block.shortcut[1].weight), block.shortcut[2], train))


def _check_parity(module, ref_fn, x, batch_norm):
    out, ref = module(x), ref_fn(module, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *module.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("radix,cardinality,stride,bias", [
    (2, 1, 1, False), (2, 2, 2, True), (1, 2, 1, False), (4, 1, 1, True),
])
@pytest.mark.parametrize("device", DEVICES)
def test_split_attention_parity(train, radix, cardinality, stride, bias, device, batch_norm, randomise_batch_norms):
    m = SplitAttentionConv2d(8, 6, 3, stride, radix=radix, cardinality=cardinality, bias=bias)
    m = randomise_batch_norms(m).to(device, torch.float64).train(train)
    x = torch.randn(3, 8, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    _check_parity(m, _split_attention, x, batch_norm)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("in_channels,stride,cardinality", [(16, 1, 1), (8, 2, 2), (16, 2, 1)])
@pytest.mark.parametrize("device", DEVICES)
def test_bottleneck_parity(train, in_channels, stride, cardinality, device, batch_norm, randomise_batch_norms):
    block = ResNeStBottleneck(in_channels, 16, stride=stride, cardinality=cardinality)
    block = randomise_batch_norms(block).to(device, torch.float64).train(train)
    x = torch.randn(2, in_channels, 7, 6, device=device, dtype=torch.float64, requires_grad=True)
    _check_parity(block, _bottleneck, x, batch_norm)


def test_attention_is_a_softmax_over_splits():
    m = SplitAttentionConv2d(12, 6, radix=3, cardinality=2)
    splits = torch.randn(2, 3, 6, 5, 5)
    att = m.attention(splits)
    assert att.shape == (2, 3, 6)
    torch.testing.assert_close(att.sum(dim=1), torch.ones(2, 6))


def test_gradcheck():
    m = SplitAttentionConv2d(4, 2, radix=2, cardinality=2).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    block = ResNeStBottleneck(4, 8, stride=2).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_shape_repr_and_counts():
    m = SplitAttentionConv2d(64, 64)
    assert m(torch.randn(2, 64, 9, 7)).shape == (2, 64, 9, 7)
    assert repr(m).startswith(
        "SplitAttentionConv2d(\n  64, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), radix=2\n")
    hidden = max(64 * 2 // 4, 32)
    params = 128 * 32 * 9 + 2 * 128 + (hidden * 64 + hidden) + 2 * hidden + (128 * hidden + 128)
    assert m.num_parameters() == params
    assert m.macs((64, 9, 7)) == 63 * (128 * 32 * 9 + 2 * 64) + hidden * 64 + 128 * hidden
    block = ResNeStBottleneck(64, 256, stride=2)
    assert block(torch.randn(2, 64, 9, 7)).shape == (2, 256, 5, 4)
    assert repr(block).startswith("ResNeStBottleneck(\n  64, 256, stride=2, width=64, bottleneck_width=64\n")
    expected = 63 * 64 * 64 + block.splat.macs((64, 9, 7)) + 20 * 256 * 64 + 20 * 256 * 64
    assert block.macs((64, 9, 7)) == expected


@pytest.mark.parametrize("cls,args,kwargs", [
    (SplitAttentionConv2d, (6, 6), dict(radix=4)), (SplitAttentionConv2d, (8, 6), dict(cardinality=4)),
    (SplitAttentionConv2d, (6, 6), dict(radix=1, cardinality=3)),  # attention width 32 not divisible by 3
    (ResNeStBottleneck, (8, 10), {}), (ResNeStBottleneck, (8, 8), dict(bottleneck_width=4)),
])
def test_bad_arguments(cls, args, kwargs):
    with pytest.raises(ValueError, match=cls.__name__):
        cls(*args, **kwargs)
