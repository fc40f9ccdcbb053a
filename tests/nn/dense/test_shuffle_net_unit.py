"""ShuffleNetUnit: parity with a F.conv2d / F.batch_norm / index-shuffle / F.avg_pool2d composition
(train and eval; outputs and gradients), gradcheck, shapes, repr, counts, errors."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import ShuffleNetUnit
from irregconv.testing import DEVICES, assert_close_with_grads


def _reference(unit, x, batch_norm):
    g, mid = unit.groups, unit.mid_channels
    y = torch.relu(batch_norm(F.conv2d(x, unit.compress.weight, groups=g), unit.compress_bn, unit.training))
    y = y[:, [(c % g) * (mid // g) + c // g for c in range(mid)]]
    y = batch_norm(F.conv2d(y, unit.depthwise.weight, None, unit.stride, unit.kernel_size // 2, groups=mid),
                   unit.depthwise_bn, unit.training)
    y = batch_norm(F.conv2d(y, unit.expand.weight, groups=g), unit.expand_bn, unit.training)
    if unit.stride == 1:
        return torch.relu(x + y)
    return torch.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], dim=1))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("in_channels,out_channels,kernel_size,stride,groups", [
    (12, 12, 3, 1, 3), (12, 24, 3, 2, 3), (8, 8, 5, 1, 2), (8, 24, 3, 2, 2),
])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, in_channels, out_channels, kernel_size, stride, groups, device, batch_norm,
                                randomise_batch_norms):
    torch.manual_seed(0)
    unit = ShuffleNetUnit(in_channels, out_channels, kernel_size, stride, groups)
    unit = randomise_batch_norms(unit).to(device, torch.float64).train(train)
    x = torch.randn(2, in_channels, 5, 6, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = unit(x), _reference(unit, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *unit.parameters()], rtol=1e-7, atol=1e-9)


def test_gradcheck(randomise_batch_norms):
    torch.manual_seed(1)
    unit = randomise_batch_norms(ShuffleNetUnit(4, 8, stride=2, groups=2)).double().eval()
    assert torch.autograd.gradcheck(unit, (torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True),))


def test_shape_repr_and_counts():
    k, c, mid, h, w = 3, 24, 6, 8, 7
    unit = ShuffleNetUnit(c, c)
    assert unit(torch.randn(2, c, h, w)).shape == (2, c, h, w)
    assert ShuffleNetUnit(c, 48, stride=2)(torch.randn(2, c, h, w)).shape == (2, 48, 4, 4)
    assert repr(unit).startswith("ShuffleNetUnit(\n  24, 24, kernel_size=3, stride=1, groups=3, mid_channels=6\n")
    assert unit.num_parameters() == c * mid // 3 + k * k * mid + mid * c // 3 + 2 * (2 * mid + c)
    assert unit.macs((c, h, w)) == h * w * (c * mid // 3 + k * k * mid + mid * c // 3)
    wide = ShuffleNetUnit(c, 48, stride=2)
    assert wide.macs((2, c, h, w)) == 2 * (h * w * c * 12 // 3 + 4 * 4 * (k * k * 12 + 12 * 24 // 3))


@pytest.mark.parametrize("args,kwargs", [((12, 24), {}), ((12, 12), dict(stride=2)), ((12, 12), dict(stride=3)),
                                         ((12, 12), dict(groups=5)), ((12, 12), dict(kernel_size=2))])
def test_bad_arguments(args, kwargs):
    with pytest.raises(ValueError, match="ShuffleNetUnit"):
        ShuffleNetUnit(*args, **kwargs)
