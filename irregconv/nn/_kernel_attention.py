"""Attention over a bank of kernels, shared by the dense and sparse dynamic convolutions.

Paper: "Dynamic Convolution: Attention over Convolution Kernels", Chen, Dai, Liu, Chen, Yuan, Liu,
CVPR 2020, arXiv:1912.03458.

:class:`~irregconv.nn.DynamicConv2d` and :class:`~irregconv.nn.SparseDynamicConv3d` weight their
``K`` kernels per sample (per batch item) by the same head: features pooled to ``[B, C_in]`` ->
``Linear -> ReLU -> Linear`` -> softmax of the logits divided by a temperature, annealed during
training by :func:`linear_temperature`. They differ only in the pooling (over the grid, or over the
active sites) and in how the mixed kernel is run; both mixins here sit in front of the kernel-bank
base (``ExpertConv2d`` or ``ExpertSubMConv3d``), which holds ``num_experts``.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .dense._args import check_float, check_int


def linear_temperature(epoch: float, initial: float = 30.0, final: float = 1.0, anneal_epochs: float = 10) -> float:
    """The paper's schedule: the temperature falls linearly from ``initial`` to ``final`` over the
    first ``anneal_epochs`` epochs, then stays at ``final``."""
    if anneal_epochs <= 0 or epoch >= anneal_epochs:
        return final
    return initial + (final - initial) * max(epoch, 0) / anneal_epochs


class KernelBank:
    """Mixin naming the bank size of an expert convolution built with ``experts_name="num_kernels"``."""

    @property
    def num_kernels(self) -> int:
        return self.num_experts


class KernelAttention(KernelBank):
    """Mixin: the softmax-with-temperature attention head over a bank of ``K`` kernels.

    Call :meth:`_init_attention` in ``__init__`` after the bank base, before ``reset_parameters``.

    Attributes:
        attention (nn.Sequential): ``Linear(C_in, hidden) -> ReLU -> Linear(hidden, K)``, with
            ``hidden = C_in // reduction + 1``.
        temperature (float): the current temperature; ``initial_temperature`` keeps the start value.
        reduction (int): the squeeze ratio of the hidden layer.
    """

    def _init_attention(self, in_channels: int, num_kernels: int, temperature: float, reduction: int) -> None:
        owner = type(self).__name__
        self.initial_temperature = check_float(owner, "temperature", temperature, 1e-6, float("inf"))
        self.temperature = self.initial_temperature
        self.reduction = check_int(owner, "reduction", reduction)
        hidden = in_channels // reduction + 1
        self.attention = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, num_kernels))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in self.attention:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def anneal_temperature(self, epoch: float, final: float = 1.0, anneal_epochs: float = 10) -> float:
        """Set ``temperature`` for ``epoch`` by :func:`linear_temperature` from the initial value
        (linear decay to ``final`` over ``anneal_epochs``); returns the new temperature."""
        self.temperature = linear_temperature(epoch, self.initial_temperature, final, anneal_epochs)
        return self.temperature

    def kernel_attention(self, pooled: Tensor) -> Tensor:
        """``pooled [B, C_in]`` -> ``[B, K]`` attention over the kernels (rows sum to 1)."""
        return F.softmax(self.attention(pooled) / self.temperature, dim=1)

    def attention_macs(self) -> int:
        """Multiply-accumulates of the attention head for one sample."""
        hidden = self.attention[0].out_features
        return self.in_channels * hidden + hidden * self.num_kernels

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={self.temperature:g}"
