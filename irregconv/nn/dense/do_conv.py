"""DO-Conv: a conv kernel over-parameterised by a depthwise kernel, folded into one for inference.

Paper: "DO-Conv: Depthwise Over-parameterized Convolutional Layer", Cao et al., IEEE TIP 2022,
arXiv:2006.12030.

Gather -> compute -> scatter: one ordinary ``k x k`` grid rulebook. The over-parameterisation only
changes how the per-offset weight is produced: ``W'[o, c, tap] = sum_d D[c, tap, d] W[o, c, d]``.
Composing it is a ``K x D_mul`` product per input channel; after training :meth:`DOConv2d.fold`
stores the composed kernel in a plain ``nn.Conv2d``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_input, check_int, conv_extra_repr, init_conv_geometry
from ._counting import CountingMixin
from ._dynamic import conv_output_size
from ._init import init_like_conv_
from ._reparam import conv_from


class DOConv2d(CountingMixin, nn.Module):
    r"""Depthwise over-parameterised 2-D convolution (DO-Conv).

    .. math::
        W'_{o c t} = \sum_{d=1}^{D_\text{mul}} D_{c t d}\, W_{o c d}, \qquad y = W' * x + b

    ``D [C_in, kh kw, D_mul]`` is a depthwise kernel that maps each input channel's ``kh x kw``
    patch to ``D_mul`` features, and ``W [C_out, C_in, D_mul]`` the conventional kernel applied to
    them. ``D`` is stored as ``identity + D_delta`` with ``D_delta`` initialised to zero, so the
    layer starts as a plain conv with kernel ``W`` (the paper's initialisation). Training composes
    the kernel on every forward; :meth:`fold` returns the ``nn.Conv2d`` with ``W'`` for inference,
    equal to the layer. Counts are those of the training-time layer (composition + conv).

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int or tuple): kernel size ``kh x kw`` (default: 3).
        depth_multiplier (int or None): ``D_mul >= kh kw``; None means ``kh kw`` (default: None).
        stride (int or tuple): stride (default: 1).
        padding (int, tuple or None): zero padding; None keeps ``H x W`` at stride 1 for odd kernels
            (default: None).
        dilation (int or tuple): dilation (default: 1).
        bias (bool): bias per output channel (default: False).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        weight (Tensor): ``W [C_out, C_in, D_mul]``.
        depthwise (Tensor): ``D_delta [C_in, kh kw, D_mul]``; ``D = identity + D_delta``.
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> conv = DOConv2d(8, 16)
        >>> x = torch.randn(2, 8, 10, 10)
        >>> torch.allclose(conv.fold()(x), conv(x), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 depth_multiplier: Optional[int] = None, stride: IntOrPair = 1, padding: Optional[IntOrPair] = None,
                 dilation: IntOrPair = 1, bias: bool = False):
        super().__init__()
        owner = "DOConv2d"
        init_conv_geometry(self, owner, in_channels, out_channels, kernel_size, stride, padding, dilation)
        taps = self.kernel_size[0] * self.kernel_size[1]
        d_mul = taps if depth_multiplier is None else check_int(owner, "depth_multiplier", depth_multiplier)
        if d_mul < taps:
            raise ValueError(f"{owner}: depth_multiplier must be >= kh * kw = {taps} (the paper's D_mul >= M N), "
                             f"got {d_mul}")
        self.depth_multiplier = d_mul
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, d_mul))
        self.depthwise = nn.Parameter(torch.empty(in_channels, taps, d_mul))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        identity = torch.zeros(taps, d_mul)
        identity[:, :taps] = torch.eye(taps)
        self.register_buffer("identity", identity.expand(in_channels, taps, d_mul).contiguous(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``W`` as ``nn.Conv2d`` initialises its kernel (fan-in ``C_in D_mul``), ``D_delta = 0``."""
        init_like_conv_(self.weight, self.bias, fan_in=self.in_channels * self.depth_multiplier)
        nn.init.zeros_(self.depthwise)

    def composed_weight(self) -> Tensor:
        """The folded kernel ``W' [C_out, C_in, kh, kw]``."""
        depthwise = self.identity + self.depthwise
        return torch.einsum("ctd,ocd->oct", depthwise, self.weight).reshape(
            self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return F.conv2d(x, self.composed_weight(), self.bias, self.stride, self.padding, self.dilation)

    def fold(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding the composed kernel: the inference form, equal to this layer."""
        with torch.no_grad():
            return conv_from(self.composed_weight(), self.bias, self.stride, self.padding, self.dilation)

    def _sample_macs(self, height: int, width: int) -> int:
        h_out, w_out = conv_output_size((height, width), self.kernel_size, self.stride, self.padding, self.dilation)
        taps = self.kernel_size[0] * self.kernel_size[1]
        composition = self.out_channels * self.in_channels * taps * self.depth_multiplier
        return composition + h_out * w_out * self.out_channels * self.in_channels * taps

    def extra_repr(self) -> str:
        s = conv_extra_repr(self)
        taps = self.kernel_size[0] * self.kernel_size[1]
        return s if self.depth_multiplier == taps else s + f", depth_multiplier={self.depth_multiplier}"
