"""Involution: position-specific kernels generated from the input, shared across channels in a group.

Paper: "Involution: Inverting the Inherence of Convolution for Visual Recognition", Li et al.,
CVPR 2021, arXiv:2103.06255.

Gather -> compute -> scatter: the ``k x k`` dense grid rulebook with no weight matrix at all; each
pair (output pixel, tap) carries a scalar generated from the input at the output pixel, one per
channel group: the engine's ``pair_scale`` with identity weights (``weight=None``), summed over
taps. It is the mirror image of a conv: spatially specific, channel agnostic.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_divisible, check_input, check_int, check_odd
from ._counting import CountingMixin


class Involution2d(CountingMixin, nn.Module):
    r"""Involution: a ``k x k`` kernel generated for every output pixel and channel group.

    .. math::
        \mathcal{H}_{i,j} = W_1\, \mathrm{ReLU}(\mathrm{BN}(W_0\, x_{i,j})) \in \mathbb{R}^{G \times k^2},
        \qquad y_{c, i, j} = \sum_{(u, v) \in \Delta_k} \mathcal{H}_{i, j, \lceil c G / C \rceil, u, v}\,
        x_{c,\, i + u,\, j + v}

    The kernel generator is two 1x1 convs (``C -> C / reduction -> k^2 G``, BN and ReLU between,
    as in the paper); at stride ``s`` it reads ``x`` average-pooled by ``s``. The output has as many
    channels as the input: involution does not mix channels, so ``in_channels`` must equal
    ``out_channels`` (follow it with a 1x1 conv to change the width).

    Args:
        in_channels (int): channels ``C``, a multiple of ``group_channels``.
        out_channels (int): must equal ``in_channels``.
        kernel_size (int): odd kernel size ``k`` (default: 7, as in the paper).
        stride (int): stride (default: 1).
        reduction (int): channel reduction ratio ``r`` of the generator (default: 4).
        group_channels (int): channels per group sharing a kernel, ``G = C / group_channels``
            (default: 16).

    Shapes:
        input ``[B, C, H, W]`` -> ``[B, C, H / s, W / s]`` (``H`` and ``W`` divisible by ``s``).

    Attributes:
        reduce (nn.Sequential): ``Conv2d(C, C / r, 1, bias=False)`` ``[C / r, C, 1, 1]``, BN, ReLU.
        span (nn.Conv2d): ``[k^2 G, C / r, 1, 1]`` with bias.

    Example:
        >>> inv = Involution2d(32, 32)
        >>> inv(torch.randn(2, 32, 10, 10)).shape
        torch.Size([2, 32, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7, stride: int = 1,
                 reduction: int = 4, group_channels: int = 16):
        super().__init__()
        owner = "Involution2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        if in_channels != out_channels:
            raise ValueError(f"{owner}: involution keeps the channel count, so out_channels must equal "
                             f"in_channels={in_channels}, got {out_channels}; add a 1x1 conv to change it")
        k = check_odd(owner, "kernel_size", kernel_size, "the kernel is centred on its pixel")
        self.kernel_size = (k, k)
        self.stride = check_int(owner, "stride", stride)
        self.reduction = check_int(owner, "reduction", reduction)
        self.group_channels = check_int(owner, "group_channels", group_channels)
        check_divisible(owner, "in_channels", in_channels, group_channels, "group_channels")
        if in_channels < reduction:
            raise ValueError(f"{owner}: in_channels={in_channels} is smaller than reduction={reduction}, "
                             f"which leaves the kernel generator no hidden channel; use reduction <= {in_channels}")
        self.groups = in_channels // group_channels
        hidden = in_channels // reduction
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.span = nn.Conv2d(hidden, k * k * self.groups, 1)

    def kernel_weights(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> the generated kernels ``[B, G, k^2, H_out, W_out]``."""
        pooled = x if self.stride == 1 else F.avg_pool2d(x, self.stride)
        weight = self.span(self.reduce(pooled))
        return weight.reshape(x.size(0), self.groups, self.kernel_size[0] ** 2, *weight.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        if x.size(2) % self.stride or x.size(3) % self.stride:
            raise ValueError(f"Involution2d: H and W must be divisible by stride={self.stride} (the kernels are "
                             f"generated on the pooled grid), got {x.size(2)} x {x.size(3)}")
        weight = self.kernel_weights(x)
        b, g, taps, h_out, w_out = weight.shape
        k = self.kernel_size[0]
        # Gather: every pixel's k x k neighbourhood; compute: scale by the pixel's kernel; scatter: sum over taps.
        patches = F.unfold(x, k, 1, k // 2, self.stride).reshape(b, g, self.group_channels, taps, h_out, w_out)
        return (weight.unsqueeze(2) * patches).sum(dim=3).reshape(b, self.in_channels, h_out, w_out)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = height // self.stride, width // self.stride
        generator = h_out * w_out * (self.reduce[0].weight.numel() + self.span.weight.numel())
        return generator + h_out * w_out * self.in_channels * self.kernel_size[0] ** 2

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"reduction={self.reduction}, group_channels={self.group_channels}")
