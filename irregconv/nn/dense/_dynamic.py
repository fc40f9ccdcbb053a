"""Shared pieces of the input-conditioned convolutions (CondConv, DynamicConv, DyNet, ODConv, DRConv).

All of them build one kernel per sample from a small bank of kernels and run it on that sample.
On the rulebook view nothing changes but the weight: the dense grid rulebook is the same for every
sample, and sample ``b`` multiplies its gathered rows by its own kernel. ``per_sample_conv2d`` runs
the ``B`` convolutions as a single grouped convolution by folding the batch into the channels.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._args import IntOrPair, check_divisible, check_int, conv_extra_repr, init_conv_geometry
from ._counting import CountingMixin


def per_sample_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation,
                      groups: int = 1) -> Tensor:
    """Convolve each sample with its own kernel: ``out[b] = conv2d(x[b], weight[b], bias[b])``.

    Folding the batch into the channels (``[1, B * C_in, H, W]``) with ``groups = B * G`` makes
    sample ``b`` see only kernel ``b``: one native call instead of a loop over the batch.

    Shapes:
        x ``[B, C_in, H, W]``, weight ``[B, C_out, C_in / G, kh, kw]``, bias ``[B, C_out]`` or None
        -> ``[B, C_out, H_out, W_out]``.
    """
    batch, c_in, height, width = x.shape
    c_out = weight.size(1)
    out = F.conv2d(x.reshape(1, batch * c_in, height, width), weight.reshape(batch * c_out, *weight.shape[2:]),
                   None if bias is None else bias.reshape(batch * c_out), stride, padding, dilation,
                   groups * batch)
    return out.reshape(batch, c_out, *out.shape[2:])


def conv_output_size(size: Tuple[int, int], kernel_size, stride, padding, dilation) -> Tuple[int, int]:
    """``floor((H + 2 p - d (k - 1) - 1) / s) + 1`` per axis, as in ``torch.nn.Conv2d``."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation))


class ExpertConv2d(CountingMixin, nn.Module):
    """A bank of ``E`` kernels of one convolution, combined per sample by routing coefficients.

    The base of :class:`CondConv2d`, :class:`DynamicConv2d`, :class:`DyNetConv2d` and
    :class:`ODConv2d`; subclasses only differ in how the coefficients are predicted.

    Attributes:
        weight (Tensor): ``[E, C_out, C_in / G, kh, kw]``, each expert initialised like ``nn.Conv2d``.
        bias (Tensor or None): ``[E, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair, stride: IntOrPair,
                 padding: Optional[IntOrPair], dilation: IntOrPair, groups: int, bias: bool,
                 num_experts: int, experts_name: str = "num_experts"):
        super().__init__()
        owner = type(self).__name__
        init_conv_geometry(self, owner, in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.groups = check_int(owner, "groups", groups)
        check_divisible(owner, "in_channels", in_channels, groups, "groups")
        check_divisible(owner, "out_channels", out_channels, groups, "groups")
        self.num_experts = check_int(owner, experts_name, num_experts)
        self._experts_name = experts_name
        self.weight = nn.Parameter(torch.empty(num_experts, out_channels, in_channels // groups,
                                               *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(num_experts, out_channels)) if bias else None

    def reset_parameters(self) -> None:
        """Initialise every expert as ``nn.Conv2d`` initialises its one kernel."""
        fan_in = self.weight[0].numel() // self.out_channels
        for expert in self.weight:
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def mixed_kernel(self, coeff: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Per-sample kernels from routing coefficients.

        Args:
            coeff (Tensor): ``[B, E]`` (one coefficient per expert) or ``[B, E, C_out]`` (one per
                expert and output channel).

        Returns:
            weight ``[B, C_out, C_in / G, kh, kw]`` and bias ``[B, C_out]`` (or None).
        """
        if coeff.dim() == 2:
            weight = (coeff @ self.weight.flatten(1)).reshape(-1, *self.weight.shape[1:])
            bias = None if self.bias is None else coeff @ self.bias
        else:
            weight = torch.einsum("beo,eoj->boj", coeff, self.weight.flatten(2))
            weight = weight.reshape(-1, *self.weight.shape[1:])
            bias = None if self.bias is None else torch.einsum("beo,eo->bo", coeff, self.bias)
        return weight, bias

    def conv_mixed_kernel(self, x: Tensor, coeff: Tensor) -> Tensor:
        """Mix the kernels per sample (``coeff`` as in :meth:`mixed_kernel`), then one grouped conv."""
        weight, bias = self.mixed_kernel(coeff)
        return per_sample_conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def mixing_macs(self) -> int:
        """Multiply-accumulates of mixing the bank into one sample's kernel and bias."""
        return self.weight.numel() + (0 if self.bias is None else self.bias.numel())

    def output_size(self, size: Tuple[int, int]) -> Tuple[int, int]:
        """``(H_out, W_out)`` for an ``(H, W)`` input."""
        return conv_output_size(size, self.kernel_size, self.stride, self.padding, self.dilation)

    def conv_macs(self, size: Tuple[int, int]) -> int:
        """Multiply-accumulates of one sample's convolution with one (already mixed) kernel."""
        h_out, w_out = self.output_size(size)
        return h_out * w_out * self.weight[0].numel()

    def extra_repr(self) -> str:
        return conv_extra_repr(self) + f", {self._experts_name}={self.num_experts}"
