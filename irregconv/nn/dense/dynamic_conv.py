"""Dynamic convolution: attention over a bank of kernels, softmax with a temperature.

Paper: "Dynamic Convolution: Attention over Convolution Kernels", Chen, Dai, Liu, Chen, Yuan, Liu,
CVPR 2020, arXiv:1912.03458.

Gather -> compute -> scatter: the dense-grid rulebook is shared by all samples; the compute step of
sample ``b`` multiplies its gathered rows by the kernel ``sum_k pi_k(x_b) W_k`` aggregated for it,
and scatter is the ordinary sum. Kernels are aggregated before the conv (one grouped conv over the
batch), as in the paper.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .._kernel_attention import KernelAttention, linear_temperature
from ._args import IntOrPair, check_input
from ._dynamic import ExpertConv2d

__all__ = ["DynamicConv2d", "linear_temperature"]


class DynamicConv2d(KernelAttention, ExpertConv2d):
    r"""Dynamic 2-D convolution: a per-sample, attention-weighted sum of ``K`` kernels.

    .. math::
        \pi(x) = \mathrm{softmax}\big(W_2\, \mathrm{ReLU}(W_1\, \mathrm{GAP}(x)) / T\big), \qquad
        y = \Big(\sum_{k=1}^{K} \pi_k(x) W_k\Big) * x + \sum_k \pi_k(x) b_k

    The attention weights are positive and sum to 1. A large temperature ``T`` (30 in the paper)
    keeps them near uniform early in training, so that all kernels learn; anneal it towards 1 with
    :meth:`anneal_temperature` (or :func:`linear_temperature`) once per epoch.

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, dilation (int or tuple): as in :class:`torch.nn.Conv2d` (default: 3, 1, 1).
        padding (int, tuple or None): zero padding; None (default) keeps ``H x W`` at stride 1 for odd kernels.
        groups (int): channel groups ``G`` (default: 1).
        bias (bool): one bias per kernel, aggregated like the kernels (default: True).
        num_kernels (int): kernels ``K`` (default: 4, as in the paper).
        temperature (float): initial softmax temperature ``T`` (default: 30.0, as in the paper).
        reduction (int): squeeze ratio of the attention's hidden layer, which has
            ``C_in // reduction + 1`` units (default: 4, as in the paper).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        weight (Tensor): ``[K, C_out, C_in / G, kh, kw]``.
        bias (Tensor or None): ``[K, C_out]``.
        attention (nn.Sequential): ``Linear(C_in, hidden) -> ReLU -> Linear(hidden, K)``.
        temperature (float): the current temperature; ``initial_temperature`` keeps the start value.

    Example:
        >>> conv = DynamicConv2d(8, 16)
        >>> conv(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
        >>> conv.anneal_temperature(epoch=5)  # halfway from 30 to 1
        15.5
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, num_kernels: int = 4, temperature: float = 30.0,
                 reduction: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, num_kernels, experts_name="num_kernels")
        self._init_attention(in_channels, num_kernels, temperature, reduction)
        self.reset_parameters()

    def attention_weights(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, K]`` attention over the kernels (rows sum to 1)."""
        return self.kernel_attention(x.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.conv_mixed_kernel(x, self.attention_weights(x))

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample: attention, kernel aggregation, conv."""
        return self.attention_macs() + self.mixing_macs() + self.conv_macs((height, width))
