"""Structural re-parameterisation helpers: fold branches with batch norm into one conv kernel.

Used by ACBlock2d and DiverseBranchBlock2d, whose training-time branches are all linear in the
input once batch norm uses its running statistics (eval mode), so their sum is a single conv, and
by DOConv2d, whose over-parameterised kernel folds into one.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn


def fold_batch_norm(weight: Tensor, bias: Optional[Tensor], bn: nn.BatchNorm2d) -> Tuple[Tensor, Tensor]:
    """``bn(conv(x, weight, bias))`` in eval mode as one conv: returns the folded ``(weight, bias)``.

    Args:
        weight (Tensor): ``[C_out, C_in / G, kh, kw]``.
        bias (Tensor or None): ``[C_out]``.
        bn (nn.BatchNorm2d): over ``C_out`` channels; its running statistics are used.
    """
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean if bias is None else bias - bn.running_mean
    folded_bias = shift * scale + (bn.bias if bn.bias is not None else 0)
    return weight * scale.reshape(-1, 1, 1, 1), folded_bias


def conv_from(weight: Tensor, bias: Optional[Tensor], stride, padding, dilation=1, groups: int = 1) -> nn.Conv2d:
    """An ``nn.Conv2d`` holding (copies of) ``weight [C_out, C_in / G, kh, kw]`` and ``bias [C_out]``."""
    c_out, c_in_per_group, kh, kw = weight.shape
    conv = nn.Conv2d(c_in_per_group * groups, c_out, (kh, kw), stride, padding, dilation, groups,
                     bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv
