"""Self-calibrated convolution: one channel half is gated by a down-sampled calibration branch.

Paper: "Improving Convolutional Networks with Self-Calibrated Convolutions", Liu, Hou, Cheng,
Wang, Feng, CVPR 2020 (no arXiv version; https://mmcheng.net/scconv/).

Gather -> compute -> scatter: four ordinary grid rulebooks (``K1`` to ``K4``), one of them on the
``r``-times average-pooled grid (``K2``); the calibration is an elementwise gate between two
scattered results, and nearest upsampling is a one-offset rulebook from the coarse grid to the fine.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_divisible, check_input, check_int, conv_extra_repr, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size


def _conv_bn(c_in: int, c_out: int, kernel_size, stride, padding) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False), nn.BatchNorm2d(c_out))


class SCConv2d(CountingMixin, nn.Module):
    r"""Self-calibrated 2-D convolution (SCConv).

    .. math::
        Y_1 = K_4\big(K_3(X_1) \odot \sigma(X_1 + \mathrm{Up}(K_2(\mathrm{AvgPool}_r(X_1))))\big),
        \qquad Y_2 = K_1(X_2), \qquad y = [Y_1, Y_2]

    The input is split into two channel halves ``X_1, X_2``; every ``K_i`` is a ``k x k`` conv
    followed by batch norm, as in the authors' code. ``K_2`` and ``K_3`` keep ``C_in / 2``
    channels (the gate adds ``X_1``); ``K_4`` and ``K_1`` map to ``C_out / 2`` and carry the stride.
    ``Up`` is nearest interpolation back to ``X_1``'s size (the authors' code; the paper says
    bilinear).

    Args:
        in_channels (int): input channels ``C_in``, even.
        out_channels (int): output channels ``C_out``, even.
        kernel_size (int or tuple): kernel size (default: 3).
        stride (int or tuple): stride of ``K_1`` and ``K_4`` (default: 1).
        pooling_r (int): down-sampling rate ``r`` of the calibration branch (default: 4, as in the paper).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``,
        ``H_out = floor((H + 2 (k // 2) - k) / s) + 1`` (``H_out = H`` at stride 1, odd ``k``).

    Attributes:
        k1, k2, k3, k4 (nn.Sequential): conv + BN; weights ``[C_out / 2, C_in / 2, k, k]``,
            ``[C_in / 2, C_in / 2, k, k]`` (twice) and ``[C_out / 2, C_in / 2, k, k]``.

    Example:
        >>> conv = SCConv2d(16, 32)
        >>> conv(torch.randn(2, 16, 12, 12)).shape
        torch.Size([2, 32, 12, 12])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3, stride: IntOrPair = 1,
                 pooling_r: int = 4):
        super().__init__()
        owner = "SCConv2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        check_divisible(owner, "in_channels", in_channels, 2, "the number of halves")
        check_divisible(owner, "out_channels", out_channels, 2, "the number of halves")
        self.kernel_size = to_pair(owner, "kernel_size", kernel_size)
        self.stride = to_pair(owner, "stride", stride)
        self.padding = tuple(k // 2 for k in self.kernel_size)
        self.pooling_r = check_int(owner, "pooling_r", pooling_r)
        half_in, half_out = in_channels // 2, out_channels // 2
        self.k1 = _conv_bn(half_in, half_out, self.kernel_size, self.stride, self.padding)
        self.k2 = _conv_bn(half_in, half_in, self.kernel_size, 1, self.padding)
        self.k3 = _conv_bn(half_in, half_in, self.kernel_size, 1, self.padding)
        self.k4 = _conv_bn(half_in, half_out, self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        if min(x.shape[-2:]) < self.pooling_r:
            raise ValueError(f"SCConv2d: input is {x.size(-2)} x {x.size(-1)} but pooling_r={self.pooling_r}; the "
                             f"calibration branch average-pools by pooling_r, so H and W must be >= {self.pooling_r} "
                             f"(or build the layer with a smaller pooling_r)")
        x1, x2 = x.chunk(2, dim=1)
        calibration = F.interpolate(self.k2(F.avg_pool2d(x1, self.pooling_r)), size=x1.shape[-2:])
        y1 = self.k4(self.k3(x1) * torch.sigmoid(x1 + calibration))
        return torch.cat([y1, self.k1(x2)], dim=1)

    def _sample_macs(self, height: int, width: int) -> int:
        k, p, r = self.kernel_size, self.padding, self.pooling_r
        full = conv_output_size((height, width), k, (1, 1), p, (1, 1))
        strided = conv_output_size((height, width), k, self.stride, p, (1, 1))
        pooled = conv_output_size((height // r, width // r), k, (1, 1), p, (1, 1))
        return (math.prod(strided) * (self.k1[0].weight.numel() + self.k4[0].weight.numel())
                + math.prod(full) * self.k3[0].weight.numel() + math.prod(pooled) * self.k2[0].weight.numel())

    def extra_repr(self) -> str:
        return conv_extra_repr(self) + f", pooling_r={self.pooling_r}"
