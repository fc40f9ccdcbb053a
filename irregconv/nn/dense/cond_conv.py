"""CondConv: a convolution whose kernel is a per-sample mixture of expert kernels.

Paper: "CondConv: Conditionally Parameterized Convolutions for Efficient Inference",
Yang, Bender, Le, Ngiam, NeurIPS 2019, arXiv:1904.04971.

Gather -> compute -> scatter: the rulebook is the ordinary dense-grid one (same for every sample);
only the compute step changes, sample ``b`` multiplying its gathered rows by its own kernel
``sum_e r_be W_e``. Scatter is the usual sum. Because the mixture is linear, mixing the kernels
before the conv or the outputs after it gives the same result; both are implemented.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_input
from ._dynamic import ExpertConv2d

_STRATEGIES = ("auto", "kernel", "output")


class CondConv2d(ExpertConv2d):
    r"""Conditionally parameterised 2-D convolution (CondConv).

    .. math::
        r(x) = \sigma(\mathrm{GAP}(x) R^\top + c), \qquad
        y = \Big(\sum_{e=1}^{E} r_e(x)\, W_e\Big) * x + \sum_e r_e(x)\, b_e

    Two ways to compute it, equal up to rounding: ``"kernel"`` mixes the expert kernels per sample
    and runs one grouped conv over the batch (cost independent of ``E`` apart from the mixing);
    ``"output"`` runs every expert as one wide conv and mixes the outputs (``E`` times the conv
    cost, but no per-sample kernels). ``"auto"`` follows the authors' advice: output mixing for up
    to 4 experts, kernel mixing above.

    Args:
        in_channels (int): input channels ``C_in``.
        out_channels (int): output channels ``C_out``.
        kernel_size (int or tuple): kernel size (default: 3).
        stride (int or tuple): stride (default: 1).
        padding (int, tuple or None): zero padding; None keeps ``H x W`` at stride 1 for odd kernels
            (``dilation * (k - 1) // 2``) (default: None).
        dilation (int or tuple): dilation (default: 1).
        groups (int): channel groups ``G`` (default: 1).
        bias (bool): one bias per expert, mixed like the kernels (default: True).
        num_experts (int): experts ``E`` (default: 4, one of the paper's settings).
        strategy (str): ``"auto"``, ``"kernel"`` or ``"output"`` (default: ``"auto"``).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` with
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` with the defaults).

    Attributes:
        weight (Tensor): ``[E, C_out, C_in / G, kh, kw]``.
        bias (Tensor or None): ``[E, C_out]``.
        routing (nn.Linear): ``C_in -> E``, followed by a sigmoid.

    Example:
        >>> conv = CondConv2d(8, 16)
        >>> conv(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair = 3,
                 stride: IntOrPair = 1, padding: Optional[IntOrPair] = None, dilation: IntOrPair = 1,
                 groups: int = 1, bias: bool = True, num_experts: int = 4, strategy: str = "auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, num_experts)
        if strategy not in _STRATEGIES:
            raise ValueError(f"CondConv2d: strategy must be one of {_STRATEGIES}, got {strategy!r}")
        self.strategy = strategy
        self.routing = nn.Linear(in_channels, num_experts)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.routing.reset_parameters()

    @property
    def resolved_strategy(self) -> str:
        """The strategy used by ``forward``: ``"auto"`` resolved by the number of experts."""
        if self.strategy != "auto":
            return self.strategy
        return "output" if self.num_experts <= 4 else "kernel"

    def routing_weights(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, E]`` routing weights in (0, 1) (not normalised)."""
        return torch.sigmoid(self.routing(x.mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        r = self.routing_weights(x)
        if self.resolved_strategy == "kernel":
            return self.conv_mixed_kernel(x, r)
        return self._output_mixing(x, r)

    def _output_mixing(self, x: Tensor, r: Tensor) -> Tensor:
        experts, c_out, groups = self.num_experts, self.out_channels, self.groups
        # One conv with all E kernels stacked on the output axis; with groups, each group's outputs
        # must stay contiguous, so experts are stacked inside each group: [G, E, C_out / G, ...].
        weight = self.weight.reshape(experts, groups, c_out // groups, *self.weight.shape[2:])
        weight = weight.transpose(0, 1).reshape(groups * experts * (c_out // groups), *self.weight.shape[2:])
        bias = None
        if self.bias is not None:
            bias = self.bias.reshape(experts, groups, c_out // groups).transpose(0, 1).reshape(-1)
        out = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)
        out = out.reshape(x.size(0), groups, experts, c_out // groups, *out.shape[2:])
        return torch.einsum("be,bgechw->bgchw", r, out).reshape(x.size(0), c_out, *out.shape[-2:])

    def _sample_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates for one sample with the resolved strategy:
        routing, then either kernel mixing plus one conv, or ``E`` convs plus output mixing."""
        routing = self.in_channels * self.num_experts
        if self.resolved_strategy == "kernel":
            return routing + self.mixing_macs() + self.conv_macs((height, width))
        h_out, w_out = self.output_size((height, width))
        return routing + self.num_experts * (self.conv_macs((height, width)) + self.out_channels * h_out * w_out)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.strategy == "auto" else s + f", strategy={self.strategy!r}"
