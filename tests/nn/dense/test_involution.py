"""Involution2d: a naive per-pixel, per-group loop (outputs and gradients), gradcheck, shapes,
counts, and the in_channels == out_channels rule."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.engine import gather_scatter
from irregconv.nn.dense import Involution2d
from irregconv.rulebook import build_dense_rulebook
from irregconv.testing import DEVICES, assert_close_with_grads


def _per_pixel_reference(inv, x, batch_norm):
    """Kernels from the generator written with F calls, then for every output pixel and group the sum
    over the k x k window of kernel tap x input, as a loop."""
    conv0, bn = inv.reduce[0], inv.reduce[1]
    pooled = F.avg_pool2d(x, inv.stride) if inv.stride > 1 else x
    hidden = F.relu(batch_norm(F.conv2d(pooled, conv0.weight), bn, inv.training))
    kernels = F.conv2d(hidden, inv.span.weight, inv.span.bias)  # [B, G * k * k, H_out, W_out]
    k, s, gc = inv.kernel_size[0], inv.stride, inv.group_channels
    xp = F.pad(x, (k // 2,) * 4)
    out = torch.zeros(x.size(0), x.size(1), *kernels.shape[-2:], dtype=x.dtype, device=x.device)
    for b in range(x.size(0)):
        for i in range(kernels.size(2)):
            for j in range(kernels.size(3)):
                for g in range(inv.groups):
                    tap = kernels[b, g * k * k:(g + 1) * k * k, i, j].reshape(k, k)
                    window = xp[b, g * gc:(g + 1) * gc, i * s:i * s + k, j * s:j * s + k]
                    out[b, g * gc:(g + 1) * gc, i, j] = (tap * window).sum(dim=(1, 2))
    return out


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels,kernel_size,stride,group_channels", [(4, 3, 1, 2), (6, 5, 2, 3), (4, 3, 1, 4)])
@pytest.mark.parametrize("device", DEVICES)
def test_parity_with_per_pixel_loop(train, channels, kernel_size, stride, group_channels, device, batch_norm,
                                    randomise_batch_norms):
    inv = Involution2d(channels, channels, kernel_size, stride, reduction=2, group_channels=group_channels)
    inv = randomise_batch_norms(inv).to(device, torch.float64).train(train)
    x = torch.randn(2, channels, 6, 4, device=device, dtype=torch.float64, requires_grad=True)
    out, ref = inv(x), _per_pixel_reference(inv, x, batch_norm)
    assert_close_with_grads(out, ref, [x, *inv.parameters()], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("stride", [1, 2])
def test_equals_engine_pair_scale(stride):
    """One group: involution is gather_scatter on the dense rulebook with identity weights and the
    generated kernel as each pair's scale (the mapping the module docstring claims)."""
    inv = Involution2d(4, 4, 3, stride, reduction=2, group_channels=4).double()
    x = torch.randn(2, 4, 6, 4, dtype=torch.float64)
    rb = build_dense_rulebook((6, 4), 2, 3, stride, 1)
    kernels = inv.kernel_weights(x).flatten(3)  # [B, 1, K, H_out * W_out]
    offset = torch.repeat_interleave(torch.arange(rb.kernel_volume), torch.diff(rb.offset_ptr))
    pixels = kernels.size(-1)
    pair_scale = kernels[rb.out_idx // pixels, 0, offset, rb.out_idx % pixels]
    out = gather_scatter(x.permute(0, 2, 3, 1).reshape(-1, 4), None, rb, pair_scale)
    out = out.reshape(2, *rb.geometry.out_spatial_shape, 4).permute(0, 3, 1, 2)
    torch.testing.assert_close(inv(x), out, rtol=1e-7, atol=1e-9)


def test_gradcheck():
    inv = Involution2d(4, 4, 3, reduction=2, group_channels=2).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(inv, (x,))


def test_shape_repr_and_counts():
    inv = Involution2d(32, 32)
    assert inv(torch.randn(2, 32, 9, 7)).shape == (2, 32, 9, 7)
    assert inv.kernel_weights(torch.randn(2, 32, 9, 7)).shape == (2, 2, 49, 9, 7)
    assert Involution2d(32, 32, stride=2)(torch.randn(2, 32, 10, 8)).shape == (2, 32, 5, 4)
    assert repr(inv).startswith(
        "Involution2d(\n  32, 32, kernel_size=(7, 7), stride=1, reduction=4, group_channels=16\n")
    assert inv.num_parameters() == 8 * 32 + 2 * 8 + 98 * 8 + 98
    assert inv.macs((32, 9, 7)) == 63 * (8 * 32 + 98 * 8) + 63 * 32 * 49


@pytest.mark.parametrize("args,kwargs", [
    ((16, 32), {}),  # in_channels != out_channels
    ((24, 24), {}),  # not a multiple of group_channels=16
    ((16, 16), dict(kernel_size=4)), ((2, 2), dict(group_channels=1)),
])
def test_bad_arguments(args, kwargs):
    with pytest.raises(ValueError, match="Involution2d"):
        Involution2d(*args, **kwargs)


def test_input_not_divisible_by_stride():
    with pytest.raises(ValueError, match="Involution2d: H and W must be divisible by stride=2"):
        Involution2d(16, 16, 3, stride=2)(torch.randn(1, 16, 7, 8))
