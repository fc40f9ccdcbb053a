"""Split-attention convolution and the ResNeSt bottleneck built on it.

Paper: "ResNeSt: Split-Attention Networks", Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller,
Manmatha, Li, Smola, 2020, arXiv:2004.08955.

Gather -> compute -> scatter: one grid rulebook with a grouped weight (``G = cardinality x radix``)
produces ``radix`` splits of every cardinal group; the split attention is a per-sample, per-channel
softmax over the splits, i.e. a scale on each split's scattered result before they are summed.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_divisible, check_input, check_int, conv_extra_repr, init_conv_geometry
from ._counting import CountingMixin
from ._dynamic import conv_output_size


class SplitAttentionConv2d(CountingMixin, nn.Module):
    r"""Split-attention 2-D convolution (ResNeSt's SplAtConv2d).

    .. math::
        U = \mathrm{ReLU}(\mathrm{BN}(W * x)) = [U_1, \dots, U_R], \quad
        a = \mathrm{rSoftmax}(F_2\, \mathrm{ReLU}(\mathrm{BN}(F_1\, \mathrm{GAP}(\textstyle\sum_r U_r)))), \quad
        y = \sum_{r=1}^{R} a_r \odot U_r

    ``W`` is a grouped conv with ``cardinality * radix`` groups producing ``radix`` splits of
    ``C_out`` channels; ``F_1`` and ``F_2`` are 1x1 convs with ``cardinality`` groups; ``rSoftmax``
    is a softmax over the ``radix`` splits of each channel (a sigmoid when ``radix = 1``). The
    channel layout follows the authors' code. In training mode ``bn1`` normalises the pooled
    ``[B, A, 1, 1]`` features over the batch, so it needs ``B > 1``.

    Args:
        in_channels (int): input channels ``C_in``, divisible by ``cardinality * radix``.
        out_channels (int): output channels ``C_out``, divisible by ``cardinality``.
        kernel_size (int or tuple): kernel size (default: 3).
        stride (int or tuple): stride (default: 1).
        padding (int, tuple or None): zero padding; None keeps ``H x W`` at stride 1 for odd kernels
            (default: None).
        dilation (int or tuple): dilation (default: 1).
        radix (int): splits ``R`` per cardinal group (default: 2, as in ResNeSt).
        cardinality (int): cardinal groups ``K`` (default: 1, as in ResNeSt-50).
        bias (bool): bias of the grouped conv (default: False).
        reduction_factor (int): the attention's hidden width is
            ``max(C_in * radix // reduction_factor, 32)`` (default: 4).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        conv (nn.Conv2d): ``[C_out R, C_in / (K R), kh, kw]``; bn0 (nn.BatchNorm2d) over ``C_out R``.
        fc1 (nn.Conv2d): ``[A, C_out / K, 1, 1]``; bn1 (nn.BatchNorm2d) over ``A``.
        fc2 (nn.Conv2d): ``[C_out R, A / K, 1, 1]``.

    Example:
        >>> conv = SplitAttentionConv2d(64, 64)
        >>> conv(torch.randn(2, 64, 10, 10)).shape
        torch.Size([2, 64, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3, stride: IntOrPair = 1,
                 padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1, radix: int = 2,
                 cardinality: int = 1, bias: bool = False, reduction_factor: int = 4):
        super().__init__()
        owner = "SplitAttentionConv2d"
        init_conv_geometry(self, owner, in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.radix = check_int(owner, "radix", radix)
        self.cardinality = check_int(owner, "cardinality", cardinality)
        self.reduction_factor = check_int(owner, "reduction_factor", reduction_factor)
        check_divisible(owner, "in_channels", in_channels, cardinality * radix, "cardinality * radix")
        check_divisible(owner, "out_channels", out_channels, cardinality, "cardinality")
        hidden = max(in_channels * radix // reduction_factor, 32)
        check_divisible(owner, "attention width max(in_channels * radix // reduction_factor, 32)", hidden,
                        cardinality, "cardinality")
        self.conv = nn.Conv2d(in_channels, out_channels * radix, self.kernel_size, self.stride, self.padding,
                              self.dilation, groups=cardinality * radix, bias=bias)
        self.bn0 = nn.BatchNorm2d(out_channels * radix)
        self.fc1 = nn.Conv2d(out_channels, hidden, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, out_channels * radix, 1, groups=cardinality)

    def attention(self, splits: Tensor) -> Tensor:
        """``[B, R, C_out, H, W]`` splits -> ``[B, R, C_out]`` weights (softmax over ``R``)."""
        batch = splits.size(0)
        gap = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        logits = self.fc2(F.relu(self.bn1(self.fc1(gap))))  # channels ordered (cardinal group, split, channel)
        if self.radix == 1:
            return torch.sigmoid(logits).reshape(batch, 1, self.out_channels)
        logits = logits.reshape(batch, self.cardinality, self.radix, -1).transpose(1, 2)
        return F.softmax(logits, dim=1).reshape(batch, self.radix, self.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        u = F.relu(self.bn0(self.conv(x)))
        splits = u.reshape(x.size(0), self.radix, self.out_channels, *u.shape[-2:])
        return (self.attention(splits)[..., None, None] * splits).sum(dim=1)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        pixels = h_out * w_out
        attention = self.fc1.weight.numel() + self.fc2.weight.numel()
        return pixels * (self.conv.weight.numel() + self.radix * self.out_channels) + attention

    def extra_repr(self) -> str:
        s = conv_extra_repr(self) + f", radix={self.radix}"
        return s if self.cardinality == 1 else s + f", cardinality={self.cardinality}"


class ResNeStBottleneck(CountingMixin, nn.Module):
    r"""ResNeSt bottleneck: 1x1 conv, split-attention ``k x k`` conv, 1x1 conv, residual.

    .. math::
        y = \mathrm{ReLU}\big(\mathrm{BN}(W_3\, \mathrm{AvgPool}(\mathrm{SplAt}(\mathrm{ReLU}(\mathrm{BN}(W_1 x)))))
            + \mathrm{shortcut}(x)\big)

    As in ResNeSt-50 (``avd``, ``avg_down``): the width is ``C_out / 4 * bottleneck_width / 64 *
    cardinality``; at stride > 1 the split-attention conv runs at stride 1 and a 3x3 average
    pooling with that stride follows it; the shortcut is the identity when the shape is unchanged,
    else average pooling by the stride (``ceil_mode``, padding excluded) then 1x1 conv + BN.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out`` (= 4 x planes), divisible by 4.
        kernel_size (int): kernel of the split-attention conv (default: 3).
        stride (int): stride (default: 1).
        radix (int): splits (default: 2).
        cardinality (int): cardinal groups (default: 1).
        bottleneck_width (int): width per cardinal group for 64 planes (default: 64).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, ceil(H / s), ceil(W / s)]``.

    Attributes:
        conv1 (nn.Conv2d): ``[width, C_in, 1, 1]``; splat (SplitAttentionConv2d): width -> width;
        conv3 (nn.Conv2d): ``[C_out, width, 1, 1]``; bn1, bn3 (nn.BatchNorm2d);
        shortcut (nn.Sequential or None): AvgPool2d, ``[C_out, C_in, 1, 1]`` conv, BN.

    Example:
        >>> block = ResNeStBottleneck(64, 256)
        >>> block(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 256, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 radix: int = 2, cardinality: int = 1, bottleneck_width: int = 64):
        super().__init__()
        owner = "ResNeStBottleneck"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        check_divisible(owner, "out_channels", out_channels, 4, "the expansion")
        self.stride = check_int(owner, "stride", stride)
        self.bottleneck_width = check_int(owner, "bottleneck_width", bottleneck_width)
        width = int(out_channels // 4 * bottleneck_width / 64) * check_int(owner, "cardinality", cardinality)
        if width == 0:
            raise ValueError(f"{owner}: out_channels={out_channels} with bottleneck_width={bottleneck_width} gives "
                             f"width 0; use out_channels >= {4 * -(-64 // bottleneck_width)}")
        self.width = width
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.splat = SplitAttentionConv2d(width, width, kernel_size, radix=radix, cardinality=cardinality)
        self.avd = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride > 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        out = self.splat(F.relu(self.bn1(self.conv1(x))))
        if self.avd is not None:
            out = self.avd(out)
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    def _sample_macs(self, height: int, width: int) -> int:
        out_pixels = -(-height // self.stride) * -(-width // self.stride)
        macs = height * width * self.conv1.weight.numel() + self.splat._sample_macs(height, width)
        macs += out_pixels * self.conv3.weight.numel()
        return macs + (0 if self.shortcut is None else out_pixels * self.shortcut[1].weight.numel())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, width={self.width}, "
                f"bottleneck_width={self.bottleneck_width}")
