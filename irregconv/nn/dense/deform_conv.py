"""Deformable convolution v1 and, with ``modulated=True``, v2 (modulation masks).

Papers: "Deformable Convolutional Networks", Dai et al., arXiv:1703.06211 (v1); "Deformable ConvNets v2:
More Deformable, Better Results", Zhu, Hu, Lin, Dai, arXiv:1811.11168 (v2).

Gather -> compute -> scatter: the rulebook is the ordinary ``k x k`` grid rulebook, but each
(tap, output) pair gathers a bilinear interpolation at a learned real position, i.e. four input rows
with per-pair scales (the bilinear weights, times the mask in v2) that depend on the input; the compute
is the usual per-tap ``[C_in/G, C_out/G]`` GEMM and the scatter sums over taps at each output site.
The offsets (and masks) come from an ordinary conv on the same input, initialised to zero, so the
layer starts as an ordinary conv (v1) or as half of one (v2: masks ``sigmoid(0) = 0.5``).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...functional.deform_conv import deform_conv2d
from ...rulebook import conv_output_shape
from ._args import IntOrPair, check_divisible, check_input, check_int, conv_extra_repr, init_conv_geometry
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._init import init_like_conv_


class DeformConv2d(CountingMixin, nn.Module):
    r"""Deformable 2-D convolution with offsets (and masks) predicted from the input.

    .. math::
        y_o(p) = \sum_k m_k(p) \sum_c W_{o, c, k} \, x_c(p s - \text{pad} + k d + \Delta p_k(p)) + \text{bias}_o,
        \qquad [\Delta p, m] = [\mathrm{conv}_\text{off}(x), \sigma(\mathrm{conv}_\text{mask}(x))]

    ``x(.)`` is bilinear interpolation, zero outside the image; ``m = 1`` unless ``modulated``.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): None means "same" (default: None).
        dilation (int or tuple): ``d`` (default: 1).
        groups (int): ``G`` of the main weight (default: 1).
        offset_groups (int): ``G_d``, channel groups sharing one set of offsets (default: 1).
        bias (bool): bias of the main conv (default: True).
        modulated (bool): v2 modulation masks (default: False, v1).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1``.

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k_h, k_w]``.
        bias (Tensor or None): ``[C_out]``.
        offset_conv (nn.Conv2d): ``C_in -> 2 G_d K`` (``3 G_d K`` with masks) with the main conv's
            geometry, weight and bias zero-initialised.

    Parameters: the main conv's ``K C_in C_out / G (+ C_out)`` plus the offset conv's
    ``(2 or 3) G_d K (K C_in + 1)``. MACs per output site: the offset conv's ``(2 or 3) G_d K K C_in``,
    the bilinear gather's ``4 K C_in`` (plus ``K C_in`` for the masks) and the main ``K C_in C_out / G``.

    Example:
        >>> DeformConv2d(4, 8, modulated=True)(torch.randn(2, 4, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3, stride: IntOrPair = 1,
                 padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1, groups: int = 1,
                 offset_groups: int = 1, bias: bool = True, modulated: bool = False):
        super().__init__()
        owner = type(self).__name__
        init_conv_geometry(self, owner, in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.groups = check_int(owner, "groups", groups)
        self.offset_groups = check_int(owner, "offset_groups", offset_groups)
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "out_channels", out_channels, groups, "groups")
        check_divisible(owner, "in_channels", in_channels, offset_groups, "offset_groups")
        self.modulated = bool(modulated)
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset_conv = nn.Conv2d(in_channels, (3 if modulated else 2) * offset_groups * taps, self.kernel_size,
                                     self.stride, self.padding, self.dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Main weight as ``nn.Conv2d``; the offset (and mask) conv at zero, as in both papers."""
        init_like_conv_(self.weight, self.bias)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def offsets_and_mask(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """``offset [B, 2 G_d K, H_out, W_out]`` and ``mask [B, G_d K, H_out, W_out]`` (None for v1)."""
        pred = self.offset_conv(x)
        if not self.modulated:
            return pred, None
        split = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        return pred[:, :split], torch.sigmoid(pred[:, split:])

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        # an input smaller than the (dilated) kernel: name the axis here rather than fail inside torch
        conv_output_shape(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, type(self).__name__)
        offset, mask = self.offsets_and_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation,
                             self.groups, mask)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        taps = self.kernel_size[0] * self.kernel_size[1]
        sampling = (5 if self.modulated else 4) * taps * self.in_channels
        return h_out * w_out * (self.offset_conv.weight.numel() + sampling + self.weight.numel())

    def extra_repr(self) -> str:
        s = conv_extra_repr(self)
        if self.offset_groups != 1:
            s += f", offset_groups={self.offset_groups}"
        return s + (", modulated=True" if self.modulated else "")
