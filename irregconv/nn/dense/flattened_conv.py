"""Flattened convolution: a ``k x k`` conv factorised into channel, vertical and horizontal 1-D filters.

Paper: "Flattened Convolutional Neural Networks for Feedforward Acceleration", Jin, Dundar, Culurciello,
arXiv:1412.5474.

Gather -> compute -> scatter: three rulebook passes over the full grid. The lateral (channel) pass is
the one-offset identity rulebook with a ``[1, C_in, C_out]`` GEMM; the vertical and horizontal passes
use ``k``-offset rulebooks along H and along W with depthwise weights ``[k, C_out, 1, 1]`` (G = C_out).
"""
from __future__ import annotations

from torch import Tensor, nn

from ._args import check_input, check_int
from ._conv import chain_macs
from ._counting import CountingMixin
from .conv2d import Conv2d


class FlattenedConv2d(CountingMixin, nn.Module):
    r"""Lateral ``1 x 1`` conv, then depthwise ``k x 1`` and ``1 x k`` convs.

    .. math::
        y = h \circledast (v \circledast (L * x)), \qquad
        L \in \mathbb{R}^{C_\text{out} \times C_\text{in}}, \; v, h \in \mathbb{R}^{C_\text{out} \times k}

    equal to one ``k x k`` conv with the rank-one-per-channel kernel ``W[o, c, i, j] = L[o, c] v[o, i] h[o, j]``.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): ``k`` (default: 3).
        stride (int): stride of the vertical (along H) and horizontal (along W) filters (default: 1).
        bias (bool): one ``[C_out]`` bias after the last filter (default: False).
        backend (str): ``"native"`` or ``"engine"`` for the three convs (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``.

    Attributes:
        lateral (Conv2d): weight ``[C_out, C_in, 1, 1]``.
        vertical (Conv2d): weight ``[C_out, 1, k, 1]``.
        horizontal (Conv2d): weight ``[C_out, 1, 1, k]``.

    Parameters ``C_in C_out + 2 k C_out`` (without bias); MACs
    ``H W C_in C_out + H_out W k C_out + H_out W_out k C_out``.

    Example:
        >>> FlattenedConv2d(8, 16)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 16, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False, backend: str = "native"):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_int(owner, "kernel_size", kernel_size)
        s = check_int(owner, "stride", stride)
        self.lateral = Conv2d(in_channels, out_channels, 1, bias=False, backend=backend)
        self.vertical = Conv2d(out_channels, out_channels, (k, 1), (s, 1), groups=out_channels, bias=False,
                               backend=backend)
        self.horizontal = Conv2d(out_channels, out_channels, (1, k), (1, s), groups=out_channels, bias=bias,
                                 backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.horizontal(self.vertical(self.lateral(x)))

    def _sample_macs(self, height: int, width: int) -> int:
        return chain_macs((self.lateral, self.vertical, self.horizontal), (self.in_channels, height, width))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.vertical.kernel_size[0]}"
