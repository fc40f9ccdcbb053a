"""DyNet: per-output-channel fusion of fixed kernels, with coefficients predicted from the input.

Paper: "DyNet: Dynamic Convolution for Accelerating Convolutional Neural Networks", Zhang, Zhang,
Wang, Zhong, 2020, arXiv:2004.10694.

Gather -> compute -> scatter: the dense-grid rulebook is shared by all samples; sample ``b``'s
compute step uses the fused kernel whose output channel ``o`` is ``sum_k pi_bko W_k[o]``, and
scatter is the ordinary sum. Unlike CondConv / DynamicConv, each output channel has its own
coefficients, so the coefficient vector is ``K x C_out`` per sample.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .._kernel_attention import KernelBank
from ._args import IntOrPair, check_input
from ._dynamic import ExpertConv2d


class DyNetConv2d(KernelBank, ExpertConv2d):
    r"""DyNet dynamic 2-D convolution: fixed kernels fused per sample and per output channel.

    .. math::
        \pi(x) = \sigma(\mathrm{GAP}(x) A^\top + a) \in (0, 1)^{K \times C_\text{out}}, \qquad
        \tilde W_o(x) = \sum_{k=1}^{K} \pi_{k o}(x)\, W_{k, o}, \quad
        y = \tilde W(x) * x + \tilde b(x)

    The coefficient prediction module is the paper's: global average pooling, one fully-connected
    layer, sigmoid. The fused bias is ``b~_o = sum_k pi_ko b_ko``.

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, dilation (int or tuple): as in :class:`torch.nn.Conv2d` (default: 3, 1, 1).
        padding (int, tuple or None): zero padding; None (default) keeps ``H x W`` at stride 1 for odd kernels.
        groups (int): channel groups ``G`` (default: 1).
        bias (bool): fixed biases, fused like the kernels (default: True).
        num_kernels (int): fixed kernels per output channel ``K`` (the paper's ``g_t``) (default: 4).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        weight (Tensor): ``[K, C_out, C_in / G, kh, kw]``, the fixed kernels.
        bias (Tensor or None): ``[K, C_out]``, the fixed biases.
        coefficients (nn.Linear): ``C_in -> K * C_out``, followed by a sigmoid.

    Example:
        >>> conv = DyNetConv2d(8, 16)
        >>> x = torch.randn(2, 8, 10, 10)
        >>> conv(x).shape, conv.fusion_coefficients(x).shape
        (torch.Size([2, 16, 10, 10]), torch.Size([2, 4, 16]))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, num_kernels: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, num_kernels, experts_name="num_kernels")
        self.coefficients = nn.Linear(in_channels, num_kernels * out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.coefficients.reset_parameters()

    def fusion_coefficients(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, K, C_out]`` fusion coefficients in (0, 1)."""
        pi = torch.sigmoid(self.coefficients(x.mean(dim=(2, 3))))
        return pi.reshape(x.size(0), self.num_experts, self.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.conv_mixed_kernel(x, self.fusion_coefficients(x))

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample: coefficients, fusion, conv."""
        return self.coefficients.weight.numel() + self.mixing_macs() + self.conv_macs((height, width))
