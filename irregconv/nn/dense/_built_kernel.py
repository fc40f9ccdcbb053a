"""Shared base of the convs whose ordinary kernel is built from differently shaped learned weights.

The difference convolutions (CDConv2d, CrossCDConv2d, PixelDifferenceConv2d) weight sums of pixel
differences, and CircleConv2d samples the input bilinearly at fixed points of a circle; both are
linear in the gathered pixels with fixed coefficients, so each layer equals one ordinary convolution
whose kernel is re-arranged from the learned weights ("reparameterised"). The forward pass runs that
single kernel; the tests check it against the explicit formula.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import check_divisible, check_input, check_int, check_odd, conv_extra_repr, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._init import init_like_conv_


class BuiltKernelConv2d(CountingMixin, nn.Module):
    """A conv whose ``k x k`` kernel (``reparameterised_weight()``) is built from ``weight``.

    The base holds ``weight [C_out, C_in / G, T]`` (``T = weight_taps`` learned taps) and the bias;
    subclasses implement ``reparameterised_weight() -> [C_out, C_in / G, k, k]``, ``k`` being
    ``self.kernel_size`` (the size of the kernel that runs, "same" padding ``d (k - 1) / 2``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride, dilation, groups: int,
                 bias: bool, weight_taps: int):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.groups = check_int(owner, "groups", groups)
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "out_channels", out_channels, groups, "groups")
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = to_pair(owner, "stride", stride)
        self.dilation = to_pair(owner, "dilation", dilation)
        self.padding = tuple(d * (kernel_size // 2) for d in self.dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, weight_taps))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform (a = sqrt 5) over the learned taps, as ``nn.Conv2d``; uniform bias."""
        init_like_conv_(self.weight, self.bias)

    def reparameterised_weight(self) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return F.conv2d(x, self.reparameterised_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def _sample_macs(self, height: int, width: int) -> int:
        """The single reparameterised kernel: ``k^2 C_in C_out / G`` per output site."""
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        return h_out * w_out * self.out_channels * self.in_channels // self.groups * math.prod(self.kernel_size)

    def extra_repr(self) -> str:
        return conv_extra_repr(self)


def odd_kernel(owner: str, kernel_size) -> int:
    """An odd int kernel size (the difference convs need a centre tap)."""
    return check_odd(owner, "kernel_size", kernel_size, "the differences are taken to the centre pixel")


def scatter_taps(weight: Tensor, taps: Tensor, kernel_size: int) -> Tensor:
    """``[C_out, C_in/G, T]`` weights placed at the flat ``taps [T]`` of a zero ``k x k`` kernel."""
    kernel = weight.new_zeros(*weight.shape[:2], kernel_size * kernel_size)
    return kernel.index_copy(2, taps.to(weight.device), weight).reshape(*weight.shape[:2], kernel_size, kernel_size)


def centre_corrected(kernel: Tensor, theta: float) -> Tensor:
    """``kernel`` with ``theta * sum(kernel)`` subtracted at the centre tap: ``sum_k w_k (x_k - theta x_c)``."""
    k = kernel.size(-1)
    total = kernel.sum(dim=(2, 3))
    centre = torch.zeros(k, k, dtype=kernel.dtype, device=kernel.device)
    centre[k // 2, k // 2] = 1
    return kernel - theta * total[:, :, None, None] * centre

