"""Octave convolution: high- and low-frequency channel groups at two resolutions, four paths.

Paper: "Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural Networks with Octave
Convolution", Chen, Fan, Xu, Yan, Kalantidis, Rohrbach, Yan, Feng, ICCV 2019, arXiv:1904.05049.

Gather -> compute -> scatter: two grids, the full ``H x W`` one and the half-resolution one. The
H->H and L->L paths are ordinary grid rulebooks; H->L gathers from the 2x2-average-pooled high
grid; L->H runs on the low grid and scatters each coarse result to its 2x2 fine sites (nearest
upsampling, a one-offset rulebook with four pairs per coarse site). Each output group sums two paths.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_float, check_int, conv_extra_repr, same_padding, to_pair
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._init import init_like_conv_

OctaveTensor = Union[Tensor, Tuple[Tensor, Tensor]]


def _split_channels(owner: str, name: str, channels: int, alpha: float) -> Tuple[int, int]:
    """``(high, low)`` channel counts with ``low = int(alpha * channels)``."""
    low = int(alpha * channels)
    if alpha > 0 and low == 0:
        raise ValueError(f"{owner}: alpha_{name}={alpha} gives no low-frequency channel for {name}_channels="
                         f"{channels}; use alpha_{name}=0 or at least {math.ceil(1 / alpha)} channels")
    return channels - low, low


class OctaveConv2d(CountingMixin, nn.Module):
    r"""Octave 2-D convolution: a conv on a high-frequency (full-resolution) and a low-frequency
    (half-resolution) channel group.

    .. math::
        Y_H = W_{H \to H} * X_H + \mathrm{Up}_2(W_{L \to H} * X_L), \qquad
        Y_L = W_{H \to L} * \mathrm{Pool}_2(X_H) + W_{L \to L} * X_L

    ``Pool_2`` is 2x2 average pooling and ``Up_2`` nearest upsampling. The four path kernels are
    the four blocks of one ``[C_out, C_in, kh, kw]`` weight (output rows and input columns split
    high / low), so ``alpha_in = alpha_out = 0`` is exactly ``nn.Conv2d`` with that weight. The
    layer takes a pair ``(X_H, X_L)`` unless ``alpha_in = 0`` (then a plain tensor) and returns a
    pair unless ``alpha_out = 0`` (then a plain tensor). At stride 2 both inputs are first
    average-pooled by 2, as in the paper.

    Args:
        in_channels (int): input channels ``C_in`` (both groups).
        out_channels (int): output channels ``C_out`` (both groups).
        kernel_size (int or tuple): kernel size (default: 3).
        alpha_in (float): low-frequency fraction of the input, ``C_in^L = int(alpha_in * C_in)``, in
            ``[0, 1)`` (default: 0.5).
        alpha_out (float): low-frequency fraction of the output, in ``[0, 1)`` (default: 0.5).
        stride (int): 1 or 2 (default: 1).
        padding (int, tuple or None): zero padding; None keeps the size for odd kernels (default: None).
        dilation (int or tuple): dilation (default: 1).
        bias (bool): bias per output channel (default: False, the layer is usually followed by BN).

    Shapes:
        input ``X_H [B, C_in^H, H, W]`` and ``X_L [B, C_in^L, H / 2, W / 2]`` (``H``, ``W`` even)
        -> ``Y_H [B, C_out^H, H / s, W / s]`` and ``Y_L [B, C_out^L, H / 2s, W / 2s]``.

    Attributes:
        weight (Tensor): ``[C_out, C_in, kh, kw]``; block ``[:C_out^H, :C_in^H]`` is H->H,
            ``[C_out^H:, :C_in^H]`` H->L, ``[:C_out^H, C_in^H:]`` L->H, ``[C_out^H:, C_in^H:]`` L->L.
        bias (Tensor or None): ``[C_out]``, high-frequency channels first.

    Example:
        >>> conv = OctaveConv2d(16, 32)
        >>> y_h, y_l = conv((torch.randn(2, 8, 12, 12), torch.randn(2, 8, 6, 6)))
        >>> y_h.shape, y_l.shape
        (torch.Size([2, 16, 12, 12]), torch.Size([2, 16, 6, 6]))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3, alpha_in: float = 0.5,
                 alpha_out: float = 0.5, stride: int = 1, padding: Optional[IntOrPair] = None,
                 dilation: IntOrPair = 1, bias: bool = False):
        super().__init__()
        owner = "OctaveConv2d"
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.kernel_size = to_pair(owner, "kernel_size", kernel_size)
        self.alpha_in = check_float(owner, "alpha_in", alpha_in, 0.0, 1.0)
        self.alpha_out = check_float(owner, "alpha_out", alpha_out, 0.0, 1.0)
        for name, alpha in (("alpha_in", alpha_in), ("alpha_out", alpha_out)):
            if alpha == 1.0:
                raise ValueError(f"{owner}: {name} must be < 1 (the high-frequency group cannot be empty), got 1.0")
        if check_int(owner, "stride", stride) not in (1, 2):
            raise ValueError(f"{owner}: stride must be 1 or 2 (stride 2 pools both groups first), got {stride}")
        self.stride = (stride, stride)
        self.dilation = to_pair(owner, "dilation", dilation)
        self.padding = same_padding(owner, padding, self.kernel_size, self.dilation)
        self.in_high, self.in_low = _split_channels(owner, "in", in_channels, self.alpha_in)
        self.out_high, self.out_low = _split_channels(owner, "out", out_channels, self.alpha_out)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the whole weight as ``nn.Conv2d`` would."""
        init_like_conv_(self.weight, self.bias)

    def _conv(self, x: Tensor, rows: slice, cols: slice) -> Tensor:
        bias = None if self.bias is None else self.bias[rows]
        return F.conv2d(x, self.weight[rows, cols], bias, 1, self.padding, self.dilation)

    def _inputs(self, x: OctaveTensor) -> Tuple[Tensor, Optional[Tensor]]:
        owner = type(self).__name__
        if self.in_low == 0:
            if not isinstance(x, Tensor):
                raise TypeError(f"{owner}: with alpha_in=0 the input is one tensor [B, {self.in_channels}, H, W], "
                                f"got {type(x).__name__}")
            x_h, x_l = x, None
        else:
            if not (isinstance(x, (tuple, list)) and len(x) == 2):
                raise TypeError(f"{owner}: with alpha_in={self.alpha_in} the input is a pair (x_high, x_low), "
                                f"got {type(x).__name__}")
            x_h, x_l = x
        for name, part in (("x_high", x_h), ("x_low", x_l)):
            if part is not None and not (isinstance(part, Tensor) and part.is_floating_point()):
                got = part.dtype if isinstance(part, Tensor) else type(part).__name__
                raise TypeError(f"{owner}: {name} must be a floating-point tensor, got {got}")
        if x_h.dim() != 4 or x_h.size(1) != self.in_high or x_h.size(2) % 2 or x_h.size(3) % 2:
            raise ValueError(f"{owner}: x_high must have shape [B, {self.in_high}, H, W] with H and W even, "
                             f"got {list(x_h.shape)}")
        if x_l is not None and list(x_l.shape) != [x_h.size(0), self.in_low, x_h.size(2) // 2, x_h.size(3) // 2]:
            raise ValueError(f"{owner}: x_low must have shape [B, {self.in_low}, H / 2, W / 2] = "
                             f"{[x_h.size(0), self.in_low, x_h.size(2) // 2, x_h.size(3) // 2]}, got {list(x_l.shape)}")
        return x_h, x_l

    def forward(self, x: OctaveTensor) -> OctaveTensor:
        x_h, x_l = self._inputs(x)
        if self.stride[0] == 2:
            x_h = F.avg_pool2d(x_h, 2)
            x_l = None if x_l is None else F.avg_pool2d(x_l, 2)
        high, low = slice(0, self.out_high), slice(self.out_high, None)
        high_in, low_in = slice(0, self.in_high), slice(self.in_high, None)
        y_h = self._conv(x_h, high, high_in)
        y_l = self._conv(F.avg_pool2d(x_h, 2), low, high_in) if self.out_low else None
        if x_l is not None:
            from_low = F.conv2d(x_l, self.weight[:, low_in], None, 1, self.padding, self.dilation)
            y_h = y_h + F.interpolate(from_low[:, high], scale_factor=2, mode="nearest")
            y_l = None if y_l is None else y_l + from_low[:, low]
        return y_h if y_l is None else (y_h, y_l)

    def _sample_macs(self, height: int, width: int) -> int:
        """MACs of the four paths on an ``H x W`` high-frequency input (its size, not ``H / 2``)."""
        s = self.stride[0]
        taps = self.kernel_size[0] * self.kernel_size[1]

        def pixels(h: int, w: int) -> int:
            h_out, w_out = conv_output_size((h, w), self.kernel_size, (1, 1), self.padding, self.dilation)
            return h_out * w_out

        fine, coarse = pixels(height // s, width // s), pixels(height // (2 * s), width // (2 * s))
        return taps * (fine * self.out_high * self.in_high
                       + coarse * (self.out_low * self.in_high + self.out_channels * self.in_low))

    def extra_repr(self) -> str:
        return conv_extra_repr(self) + f", alpha_in={self.alpha_in}, alpha_out={self.alpha_out}"
