"""ShuffleNet unit: pointwise group conv, channel shuffle, depthwise conv, pointwise group conv.

Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices", Zhang, Zhou,
Lin, Sun, arXiv:1707.01083 (Fig. 2 b and c).

Gather -> compute -> scatter: three rulebook passes over the full grid. The two pointwise group convs
use the one-offset identity rulebook with grouped weights ``[1, G, C/G, C'/G]``; the shuffle permutes
columns between them; the depthwise conv uses the ``k x k`` rulebook with weight ``[K, C_mid, 1, 1]``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_divisible, check_input, check_int, check_odd
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from .channel_shuffle import ChannelShuffle


class ShuffleNetUnit(CountingMixin, nn.Module):
    r"""ShuffleNet v1 unit: ``GConv1x1-BN-ReLU -> shuffle -> DWConv(k, s)-BN -> GConv1x1-BN``, then
    ``ReLU(x + branch)`` at stride 1 or ``ReLU([AvgPool3x3/2(x), branch])`` at stride 2.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``; equal to ``C_in`` at stride 1 (the shortcut is added), larger at
            stride 2 (the branch produces ``C_out - C_in`` channels, concatenated to the pooled input).
        kernel_size (int): depthwise kernel ``k``, odd (default: 3).
        stride (int): 1 or 2 (default: 1).
        groups (int): ``G`` of both pointwise convs (default: 3, the paper's usual setting).
        mid_channels (int, optional): bottleneck width (default: ``C_out // 4``, as in the paper).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``.

    Attributes:
        compress (nn.Conv2d): ``[C_mid, C_in / G, 1, 1]``; ``depthwise``: ``[C_mid, 1, k, k]``;
        expand (nn.Conv2d): ``[C_branch, C_mid / G, 1, 1]``; each followed by a BatchNorm2d.

    Parameters ``C_in C_mid / G + k^2 C_mid + C_mid C_branch / G`` plus ``2 (2 C_mid + C_branch)`` of batch
    norm; MACs ``H W C_in C_mid / G + H_out W_out (k^2 C_mid + C_mid C_branch / G)``.

    Example:
        >>> ShuffleNetUnit(24, 24)(torch.randn(2, 24, 8, 8)).shape
        torch.Size([2, 24, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 3,
                 mid_channels: Optional[int] = None):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.kernel_size = check_odd(owner, "kernel_size", kernel_size, "same padding")
        self.stride = check_int(owner, "stride", stride)
        if stride not in (1, 2):
            raise ValueError(f"{owner}: stride must be 1 (add) or 2 (concat), got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"{owner}: at stride 1 the shortcut is added, so out_channels={out_channels} must equal "
                             f"in_channels={in_channels}; use stride=2 to widen")
        if stride == 2 and out_channels <= in_channels:
            raise ValueError(f"{owner}: at stride 2 out_channels={out_channels} must exceed "
                             f"in_channels={in_channels} (the branch adds out_channels - in_channels)")
        self.groups = check_int(owner, "groups", groups)
        self.mid_channels = out_channels // 4 if mid_channels is None else check_int(owner, "mid_channels",
                                                                                      mid_channels)
        branch = out_channels if stride == 1 else out_channels - in_channels
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "mid_channels", self.mid_channels, groups, "groups")
        check_divisible(owner, "branch channels (out_channels, minus in_channels at stride 2)", branch, groups,
                        "groups")
        mid = self.mid_channels
        self.compress = nn.Conv2d(in_channels, mid, 1, groups=groups, bias=False)
        self.compress_bn = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(groups)
        self.depthwise = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(mid)
        self.expand = nn.Conv2d(mid, branch, 1, groups=groups, bias=False)
        self.expand_bn = nn.BatchNorm2d(branch)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        y = self.shuffle(torch.relu(self.compress_bn(self.compress(x))))
        y = self.expand_bn(self.expand(self.depthwise_bn(self.depthwise(y))))
        if self.stride == 1:
            return torch.relu(x + y)
        return torch.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), y], dim=1))

    def _sample_macs(self, height: int, width: int) -> int:
        k = self.kernel_size
        h_out, w_out = conv_output_size((height, width), (k, k), (self.stride,) * 2, (k // 2,) * 2, (1, 1))
        return (height * width * self.compress.weight.numel()
                + h_out * w_out * (self.depthwise.weight.numel() + self.expand.weight.numel()))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, mid_channels={self.mid_channels}")
