"""Inception convolution: every output channel has its own dilation, chosen per axis.

Paper: "Inception Convolution with Efficient Dilation Search", Liu et al., 2020, arXiv:2012.13587.

Gather -> compute -> scatter: one ``k x k`` grid rulebook per distinct ``(d_h, d_w)`` pair, each
serving the block of output channels with that dilation; equivalently a single rulebook over the
union of the dilated taps whose weights are zero off each channel's own pattern.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_input, check_int, check_odd, to_pair
from ._counting import CountingMixin
from ._init import init_like_conv_

Pattern = Mapping[Tuple[int, int], int]
_DEFAULT_DILATIONS = ((1, 1), (1, 2), (2, 1), (2, 2))


def _default_pattern(out_channels: int) -> Dict[Tuple[int, int], int]:
    """``C_out`` split as evenly as possible over (1, 1), (1, 2), (2, 1), (2, 2), empty entries dropped."""
    n = len(_DEFAULT_DILATIONS)
    counts = [out_channels // n + (i < out_channels % n) for i in range(n)]
    return {d: c for d, c in zip(_DEFAULT_DILATIONS, counts) if c}


class ICConv2d(CountingMixin, nn.Module):
    r"""Inception convolution (IC-Conv): a ``k x k`` conv whose dilation differs per output channel
    and per axis.

    .. math::
        y_o = W_o *_{(d^h_o,\, d^w_o)} x + b_o

    ``pattern`` maps a dilation pair ``(d_h, d_w)`` to the number of output channels using it; the
    channels form contiguous blocks in the mapping's order (the layout of the authors' code, whose
    searched patterns can be passed as they are). Padding is ``d (k - 1) / 2`` per axis, so every
    block keeps the input size at stride 1. The default pattern splits ``C_out`` evenly over
    ``(1, 1), (1, 2), (2, 1), (2, 2)``; the paper searches the pattern per layer (EDO), with which
    this default has nothing to do.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int): odd kernel size ``k`` (default: 3).
        pattern (Mapping[(int, int), int] or None): dilation pair -> channel count, counts summing
            to ``C_out`` (default: None, the even split above).
        stride (int or tuple): stride (default: 1).
        bias (bool): bias per output channel (default: False).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``
        (``H_out = H`` at stride 1).

    Attributes:
        weight (Tensor): ``[C_out, C_in, k, k]``, rows in pattern order.
        bias (Tensor or None): ``[C_out]``.
        dilations (Tensor): ``[C_out, 2]`` int64, each output channel's ``(d_h, d_w)`` (buffer).

    Example:
        >>> conv = ICConv2d(8, 16, pattern={(1, 1): 8, (2, 3): 8})
        >>> conv(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, pattern: Optional[Pattern] = None,
                 stride: IntOrPair = 1, bias: bool = False):
        super().__init__()
        owner = "ICConv2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_odd(owner, "kernel_size", kernel_size, "every dilation keeps the kernel centred")
        self.kernel_size = (k, k)
        self.stride = to_pair(owner, "stride", stride)
        self.pattern = self._check_pattern(owner, _default_pattern(out_channels) if pattern is None else pattern)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        dilations = [d for d, count in self.pattern.items() for _ in range(count)]
        self.register_buffer("dilations", torch.tensor(dilations, dtype=torch.long), persistent=False)
        self.reset_parameters()

    def _check_pattern(self, owner: str, pattern: Pattern) -> Dict[Tuple[int, int], int]:
        if not isinstance(pattern, Mapping):
            raise TypeError(f"{owner}: pattern must map (d_h, d_w) pairs to channel counts, "
                            f"got {type(pattern).__name__}")
        checked = {}
        for dilation, count in pattern.items():
            checked[to_pair(owner, "a pattern dilation", dilation)] = check_int(owner, f"pattern[{dilation}]", count, 0)
        total = sum(checked.values())
        if total != self.out_channels:
            raise ValueError(f"{owner}: pattern channel counts must sum to out_channels={self.out_channels}, "
                             f"got {total} from {dict(pattern)}")
        return {d: c for d, c in checked.items() if c}

    def reset_parameters(self) -> None:
        """Initialise as ``nn.Conv2d`` would."""
        init_like_conv_(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        half = self.kernel_size[0] // 2
        outs, start = [], 0
        for (dh, dw), count in self.pattern.items():
            rows = slice(start, start + count)
            bias = None if self.bias is None else self.bias[rows]
            outs.append(F.conv2d(x, self.weight[rows], bias, self.stride, (dh * half, dw * half), (dh, dw)))
            start += count
        return torch.cat(outs, dim=1)

    def _sample_macs(self, height: int, width: int) -> int:
        # Same-size padding for every dilation: the output size does not depend on the block.
        h_out, w_out = (height - 1) // self.stride[0] + 1, (width - 1) // self.stride[1] + 1
        return h_out * w_out * self.weight.numel()

    def extra_repr(self) -> str:
        pattern = ", ".join(f"{d}: {c}" for d, c in self.pattern.items())
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        return s + ("" if self.bias is not None else ", bias=False") + f", pattern={{{pattern}}}"
