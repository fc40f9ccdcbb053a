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

import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_float, check_input, check_int
from ._dynamic import ExpertConv2d


def linear_temperature(epoch: float, initial: float = 30.0, final: float = 1.0, anneal_epochs: float = 10) -> float:
    """The paper's schedule: the temperature falls linearly from ``initial`` to ``final`` over the
    first ``anneal_epochs`` epochs, then stays at ``final``."""
    if anneal_epochs <= 0 or epoch >= anneal_epochs:
        return final
    return initial + (final - initial) * max(epoch, 0) / anneal_epochs


class DynamicConv2d(ExpertConv2d):
    r"""Dynamic 2-D convolution: a per-sample, attention-weighted sum of ``K`` kernels.

    .. math::
        \pi(x) = \mathrm{softmax}\big(W_2\, \mathrm{ReLU}(W_1\, \mathrm{GAP}(x)) / T\big), \qquad
        y = \Big(\sum_{k=1}^{K} \pi_k(x) W_k\Big) * x + \sum_k \pi_k(x) b_k

    The attention weights are positive and sum to 1. A large temperature ``T`` (30 in the paper)
    keeps them near uniform early in training, so that all kernels learn; anneal it towards 1 with
    :meth:`anneal_temperature` (or :func:`linear_temperature`) once per epoch.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int or tuple): kernel size (default: 3).
        stride (int or tuple): stride (default: 1).
        padding (int, tuple or None): zero padding; None keeps ``H x W`` at stride 1 for odd kernels
            (default: None).
        dilation (int or tuple): dilation (default: 1).
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
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, num_kernels: int = 4, temperature: float = 30.0,
                 reduction: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, num_kernels, experts_name="num_kernels")
        self.initial_temperature = check_float("DynamicConv2d", "temperature", temperature, 1e-6, float("inf"))
        self.temperature = self.initial_temperature
        self.reduction = check_int("DynamicConv2d", "reduction", reduction)
        hidden = in_channels // reduction + 1
        self.attention = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, num_kernels))
        self.reset_parameters()

    @property
    def num_kernels(self) -> int:
        return self.num_experts

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in self.attention:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def anneal_temperature(self, epoch: float, final: float = 1.0, anneal_epochs: float = 10) -> float:
        """Set ``temperature`` for ``epoch`` by :func:`linear_temperature` from the initial value;
        returns the new temperature."""
        self.temperature = linear_temperature(epoch, self.initial_temperature, final, anneal_epochs)
        return self.temperature

    def attention_weights(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, K]`` attention over the kernels (rows sum to 1)."""
        return F.softmax(self.attention(x.mean(dim=(2, 3))) / self.temperature, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.conv_mixed_kernel(x, self.attention_weights(x))

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample: attention, kernel aggregation, conv."""
        hidden = self.attention[0].out_features
        attention = self.in_channels * hidden + hidden * self.num_experts
        return attention + self.mixing_macs() + self.conv_macs((height, width))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={self.temperature:g}"
