"""InceptionBlock: the papers' branch layouts, parity with a F.conv2d / F.batch_norm / pooling
composition written from them (train and eval; outputs and gradients), gradcheck, shapes, repr, counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irregconv.nn.dense import InceptionBlock
from irregconv.testing import DEVICES, assert_close_with_grads


def _layout(version, c_in, c_out, k, mid):
    """Per branch: (pool or None, [(C_in, C_out, kernel), ...]) as drawn in the papers."""
    if version == 1:
        b1, b3, b5, bp = c_out // 4, c_out // 2, c_out // 8, c_out // 8
        return [(None, [(c_in, b1, (1, 1))]),
                (None, [(c_in, 3 * b3 // 4, (1, 1)), (3 * b3 // 4, b3, (k, k))]),
                (None, [(c_in, b5 // 2, (1, 1)), (b5 // 2, b5, (k + 2, k + 2))]),
                ("max", [(c_in, bp, (1, 1))])]
    w = c_out // 4
    return [(None, [(c_in, w, (1, 1))]),
            (None, [(c_in, mid, (1, 1)), (mid, mid, (1, k)), (mid, w, (k, 1))]),
            (None, [(c_in, mid, (1, 1)), (mid, mid, (1, k)), (mid, mid, (k, 1)), (mid, mid, (1, k)), (mid, w, (k, 1))]),
            ("avg", [(c_in, w, (1, 1))])]


def _reference(block, x, layout, batch_norm):
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    outs, n = [], 0
    for pool, chain in layout:
        y = x
        if pool == "max":
            y = F.max_pool2d(y, 3, 1, 1)
        elif pool == "avg":
            y = F.avg_pool2d(y, 3, 1, 1)
        for c_in, c_out, kernel in chain:
            conv = convs[n]
            assert conv.weight.shape == (c_out, c_in, *kernel)
            y = F.conv2d(y, conv.weight, conv.bias, 1, (kernel[0] // 2, kernel[1] // 2))
            if block.version == 3:
                y = batch_norm(y, bns[n], block.training)
            y = torch.relu(y)
            n += 1
        outs.append(y)
    assert n == len(convs)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("version,c_out,k,mid", [(1, 16, 3, None), (1, 32, 1, None), (3, 8, 3, None),
                                                 (3, 12, 5, 2)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, version, c_out, k, mid, device, batch_norm, randomise_batch_norms):
    torch.manual_seed(0)
    block = InceptionBlock(4, c_out, k, version, mid)
    block = randomise_batch_norms(block).to(device, torch.float64).train(train)
    x = torch.randn(2, 4, 6, 5, device=device, dtype=torch.float64, requires_grad=True)
    layout = _layout(version, 4, c_out, k, mid if mid is not None else c_out // 4)
    out, ref = block(x), _reference(block, x, layout, batch_norm)
    assert_close_with_grads(out, ref, [x, *block.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("version", [1, 3])
def test_gradcheck(version, randomise_batch_norms):
    torch.manual_seed(1)
    block = randomise_batch_norms(InceptionBlock(2, 16 if version == 1 else 4, version=version)).double().eval()
    # fast mode (random projections of the Jacobian): the full Jacobian of four branches takes seconds
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), fast_mode=True)


def test_shape_repr_and_counts():
    c_in, h, w = 16, 9, 7
    v1, v3 = InceptionBlock(c_in, 256), InceptionBlock(c_in, 32, 7, version=3)
    assert v1(torch.randn(2, c_in, h, w)).shape == (2, 256, h, w)
    assert v3(torch.randn(2, c_in, h, w)).shape == (2, 32, h, w)
    assert repr(v3).startswith("InceptionBlock(\n  16, 32, kernel_size=7, version=3, mid_channels=8\n")
    # inception (3a) widths: 64, 96 -> 128, 16 -> 32, pool -> 32
    weights = c_in * 64 + c_in * 96 + 9 * 96 * 128 + c_in * 16 + 25 * 16 * 32 + c_in * 32
    assert v1.num_parameters() == weights + 64 + 96 + 128 + 16 + 32 + 32
    assert v1.macs((2, c_in, h, w)) == 2 * h * w * weights
    m, n = 8, 7
    weights3 = c_in * m + (c_in * m + n * m * m + n * m * m) + (c_in * m + 4 * n * m * m) + c_in * m
    assert v3.num_parameters() == weights3 + 2 * (m + 3 * m + 5 * m + m)
    assert v3.macs((c_in, h, w)) == h * w * weights3


@pytest.mark.parametrize("kwargs", [dict(version=2), dict(kernel_size=4), dict(out_channels=24),
                                    dict(version=3, out_channels=10)])
def test_bad_arguments(kwargs):
    kwargs = {"out_channels": 16, **kwargs}
    with pytest.raises(ValueError, match="InceptionBlock"):
        InceptionBlock(4, **kwargs)
