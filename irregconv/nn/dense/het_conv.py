"""HetConv: heterogeneous kernels, ``k x k`` on ``1 / p`` of each filter's input channels, 1x1 on the rest.

Paper: "HetConv: Heterogeneous Kernel-Based Convolutions for Deep CNNs", Singh, Verma, Rai,
Namboodiri, CVPR 2019, arXiv:1903.04120.

Gather -> compute -> scatter: on the ``k x k`` dense rulebook, every offset but the centre carries
weights only for the ``1 / p`` channels of each filter that have a ``k x k`` kernel; the centre
offset carries all channels. The layer is therefore one conv with a masked kernel, computed here as
a grouped ``k x k`` conv (the spatial part) plus a 1x1 conv (the point part).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_divisible, check_input, check_int, check_odd, conv_extra_repr, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size


class HetConv2d(CountingMixin, nn.Module):
    r"""Heterogeneous-kernel 2-D convolution (HetConv) with part ``p``.

    .. math::
        y_o = \sum_{c \,\equiv\, o \ (\mathrm{mod}\ p)} W^{k \times k}_{o, c} * x_c
            + \sum_{c \,\not\equiv\, o \ (\mathrm{mod}\ p)} w^{1 \times 1}_{o, c}\, x_c + b_o

    Filter ``o`` has ``k x k`` kernels on the input channels ``c`` with ``c mod p = o mod p`` (so
    consecutive filters shift the pattern by one channel, as in the paper's figure) and 1x1 kernels
    on the others. :meth:`dense_weight` gives the equivalent masked ``[C_out, C_in, k, k]`` kernel.
    Parameters: ``C_out (C_in / p * k^2 + C_in (1 - 1 / p))``. The point part runs as a dense 1x1
    conv with zeros at the ``k x k`` channels, so :meth:`macs` counts ``C_out C_in`` per pixel for
    it where the paper counts ``C_out C_in (1 - 1 / p)``.

    Args:
        in_channels (int): input channels ``C_in``, a multiple of ``p``.
        out_channels (int): output channels ``C_out``, a multiple of ``p``.
        kernel_size (int): odd kernel size ``k`` (default: 3).
        p (int): part: one in ``p`` input channels of each filter has a ``k x k`` kernel (default: 4).
        stride (int or tuple): stride (default: 1).
        bias (bool): bias per output channel (default: False).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``
        (padding ``k // 2``; ``H_out = H`` at stride 1).

    Attributes:
        weight_spatial (Tensor): ``[C_out, C_in / p, k, k]``; ``[o, t]`` acts on channel ``o mod p + t p``.
        weight_point (Tensor): ``[C_out, C_in - C_in / p]``; row ``o`` acts on the channels
            ``c mod p != o mod p`` in increasing order.
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> conv = HetConv2d(16, 32)
        >>> conv(torch.randn(2, 16, 10, 10)).shape
        torch.Size([2, 32, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, p: int = 4,
                 stride: IntOrPair = 1, bias: bool = False):
        super().__init__()
        owner = "HetConv2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_odd(owner, "kernel_size", kernel_size, "the 1x1 kernels sit at its centre")
        self.kernel_size = (k, k)
        self.padding = (k // 2, k // 2)
        self.stride = to_pair(owner, "stride", stride)
        self.p = check_int(owner, "p", p)
        check_divisible(owner, "in_channels", in_channels, p, "p")
        check_divisible(owner, "out_channels", out_channels, p, "p")
        self.weight_spatial = nn.Parameter(torch.empty(out_channels, in_channels // p, k, k))
        self.weight_point = nn.Parameter(torch.empty(out_channels, in_channels - in_channels // p))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        residue = torch.arange(in_channels) % p
        # Channels of the point part for each filter, and the filter / channel orders that make the
        # spatial part a grouped conv (group g = the channels and filters with residue g).
        self.register_buffer("point_index", torch.stack(
            [torch.nonzero(residue != o % p).flatten() for o in range(out_channels)]), persistent=False)
        self.register_buffer("in_order", torch.argsort(residue, stable=True), persistent=False)
        out_order = torch.argsort(torch.arange(out_channels) % p, stable=True)
        self.register_buffer("out_order", out_order, persistent=False)
        self.register_buffer("out_inverse", torch.argsort(out_order), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``+-1 / sqrt(fan_in)`` with ``fan_in = C_in / p * k^2 + C_in - C_in / p``, the
        ``nn.Conv2d`` default scaled to the filter's real number of weights."""
        fan_in = self.weight_spatial[0].numel() + self.weight_point.size(1)
        bound = 1.0 / math.sqrt(fan_in)
        for param in (self.weight_spatial, self.weight_point, self.bias):
            if param is not None:
                nn.init.uniform_(param, -bound, bound)

    def dense_weight(self) -> Tensor:
        """The equivalent masked kernel ``[C_out, C_in, k, k]`` (zeros off the pattern)."""
        k = self.kernel_size[0]
        weight = self.weight_spatial.new_zeros(self.out_channels, self.in_channels, k, k)
        weight[:, :, k // 2, k // 2] = self._point_matrix()
        spatial_index = (torch.arange(self.out_channels, device=weight.device) % self.p)[:, None] \
            + self.p * torch.arange(self.in_channels // self.p, device=weight.device)
        weight[torch.arange(self.out_channels, device=weight.device)[:, None], spatial_index] = self.weight_spatial
        return weight

    def _point_matrix(self) -> Tensor:
        """``[C_out, C_in]``: the 1x1 weights, zero at each filter's ``k x k`` channels."""
        dense = self.weight_point.new_zeros(self.out_channels, self.in_channels)
        return dense.scatter(1, self.point_index, self.weight_point)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        spatial = F.conv2d(x[:, self.in_order], self.weight_spatial[self.out_order], None, self.stride,
                           self.padding, 1, self.p)[:, self.out_inverse]
        point = self._point_matrix()[:, :, None, None]
        return spatial + F.conv2d(x, point, self.bias, self.stride)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, (1, 1))
        return h_out * w_out * (self.weight_spatial.numel() + self.out_channels * self.in_channels)

    def extra_repr(self) -> str:
        return conv_extra_repr(self) + f", p={self.p}"
