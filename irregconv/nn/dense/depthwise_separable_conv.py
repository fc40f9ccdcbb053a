"""Depthwise separable convolution: a depthwise ``k x k`` conv, then a pointwise ``1 x 1`` conv.

Papers: "Xception: Deep Learning with Depthwise Separable Convolutions", Chollet, arXiv:1610.02357 (no
activation between the two convs, the default); "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", Howard et al., arXiv:1704.04861 (batch norm + ReLU between, via ``activation``).

Gather -> compute -> scatter: two rulebook passes over the same full grid. The depthwise pass uses the
``k x k`` rulebook with a grouped weight ``[K, C_in, 1, 1]`` (G = C_in: each channel only reads
itself); the pointwise pass uses the one-offset identity rulebook with a ``[1, C_in, C_out]`` GEMM.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ._args import check_input, check_int
from ._conv import chain_macs
from ._counting import CountingMixin
from .conv2d import Conv2d


class DepthwiseSeparableConv2d(CountingMixin, nn.Module):
    r"""Depthwise ``k x k`` conv (``G = C_in``) followed by a pointwise ``1 x 1`` conv.

    .. math::
        y = P * \phi(D \circledast x), \qquad
        D \in \mathbb{R}^{C_\text{in} \times 1 \times k \times k}, \;
        P \in \mathbb{R}^{C_\text{out} \times C_\text{in} \times 1 \times 1}

    With ``activation=None`` (``phi`` the identity) the layer equals one ordinary conv with the
    rank-structured kernel ``W[o, c] = P[o, c] D[c]``.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): depthwise kernel ``k`` (default: 3).
        stride (int or tuple): stride of the depthwise conv (default: 1).
        dilation (int or tuple): dilation of the depthwise conv (default: 1).
        bias (bool): a bias on each of the two convs (default: False; the papers follow them with batch norm).
        activation (nn.Module, optional): applied between the two convs, e.g.
            ``nn.Sequential(nn.BatchNorm2d(C_in), nn.ReLU())`` for MobileNet (default: None, as Xception).
        backend (str): ``"native"`` or ``"engine"`` for both convs (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``
        ("same" padding, ``H_out = H`` at stride 1).

    Attributes:
        depthwise (Conv2d): weight ``[C_in, 1, k, k]``.
        pointwise (Conv2d): weight ``[C_out, C_in, 1, 1]``.

    Parameters ``(k_h k_w + C_out) C_in`` (without biases); MACs ``H_out W_out (k_h k_w + C_out) C_in``.

    Example:
        >>> DepthwiseSeparableConv2d(8, 16)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 16, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, dilation=1, bias: bool = False,
                 activation: Optional[nn.Module] = None, backend: str = "native"):
        super().__init__()
        check_int(type(self).__name__, "in_channels", in_channels)
        check_int(type(self).__name__, "out_channels", out_channels)
        self.depthwise = Conv2d(in_channels, in_channels, kernel_size, stride, None, dilation, groups=in_channels,
                                bias=bias, backend=backend)
        self.activation = activation if activation is not None else nn.Identity()
        self.pointwise = Conv2d(in_channels, out_channels, 1, bias=bias, backend=backend)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.pointwise(self.activation(self.depthwise(x)))

    def _sample_macs(self, height: int, width: int) -> int:
        return chain_macs((self.depthwise, self.pointwise), (self.in_channels, height, width))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.depthwise.kernel_size}"
