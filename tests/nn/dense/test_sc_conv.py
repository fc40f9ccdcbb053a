"""SCConv2d: parity with a torch.nn.functional composition (train and eval; outputs and gradients),
gradcheck, shapes and counts."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.nn.dense import SCConv2d
from irregconv.testing import DEVICES, assert_close_with_grads


def _reference(conv, x, batch_norm):
    """The paper's four equations written with F.conv2d, F.batch_norm, F.avg_pool2d and F.interpolate."""
    def k(branch, t, stride=1):
        return batch_norm(F.conv2d(t, branch[0].weight, None, stride, conv.padding), branch[1], conv.training)

    half = conv.in_channels // 2
    x1, x2 = x[:, :half], x[:, half:]
    t1 = F.avg_pool2d(x1, conv.pooling_r)
    up = F.interpolate(k(conv.k2, t1), size=x1.shape[-2:], mode="nearest")
    y1 = k(conv.k4, k(conv.k3, x1) * torch.sigmoid(x1 + up), conv.stride)
    return torch.cat([y1, k(conv.k1, x2, conv.stride)], dim=1)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("out_channels,stride,pooling_r,size", [(6, 1, 4, (8, 12)), (4, 2, 2, (7, 9))])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_functional(train, out_channels, stride, pooling_r, size, device, batch_norm,
                                randomise_batch_norms):
    conv = SCConv2d(4, out_channels, 3, stride, pooling_r)
    conv = randomise_batch_norms(conv).to(device, torch.float64).train(train)
    x = torch.randn(2, 4, *size, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), _reference(conv, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *conv.parameters()], rtol=1e-7, atol=1e-9)


def test_calibration_upsamples_by_repetition():
    """With r = 2 and an even input, nearest interpolation is 2x2 repetition of the coarse map."""
    conv = SCConv2d(2, 2, pooling_r=2).double().eval()
    x1 = torch.randn(1, 1, 6, 4, dtype=torch.float64)
    coarse = conv.k2(F.avg_pool2d(x1, 2))
    up = F.interpolate(coarse, size=(6, 4))
    torch.testing.assert_close(up, coarse.repeat_interleave(2, 2).repeat_interleave(2, 3), rtol=0, atol=0)


def test_gradcheck():
    conv = SCConv2d(2, 2, pooling_r=2).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_shape_repr_and_counts():
    conv = SCConv2d(16, 32)
    assert conv(torch.randn(2, 16, 12, 10)).shape == (2, 32, 12, 10)
    assert SCConv2d(16, 32, stride=2)(torch.randn(2, 16, 12, 9)).shape == (2, 32, 6, 5)
    assert repr(conv).startswith(
        "SCConv2d(\n  16, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), pooling_r=4\n")
    weights = 2 * 16 * 8 * 9 + 2 * 8 * 8 * 9
    assert conv.num_parameters() == weights + 2 * (16 + 8 + 8 + 16)
    assert conv.macs((16, 12, 10)) == 120 * 2 * 16 * 8 * 9 + 120 * 8 * 8 * 9 + 3 * 2 * 8 * 8 * 9


@pytest.mark.parametrize("args,kwargs,error", [((3, 4), {}, ValueError), ((4, 5), {}, ValueError),
                                               ((4, 4), dict(pooling_r=0), ValueError)])
def test_bad_arguments(args, kwargs, error):
    with pytest.raises(error, match="SCConv2d"):
        SCConv2d(*args, **kwargs)
