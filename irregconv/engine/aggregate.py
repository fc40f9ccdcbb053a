"""Scatter reductions of per-pair messages into output rows: sum, mean, max (and min).

Messages arrive in rulebook pair order, sorted by output within each kernel offset, so every reduction
is a sorted segment reduction (``torch.segment_reduce``): deterministic, no atomics.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..rulebook import Rulebook

REDUCTIONS = ("sum", "mean", "max", "min")


def aggregate(messages: Tensor, rulebook: Rulebook, reduce: str = "sum") -> Tensor:
    """Reduce ``messages [P, C]`` (one per rulebook pair) into ``[N_out, C]``.

    Rows with no pair get 0 for every reduction (as PyG and torch_scatter do), never ``-inf``.

    Args:
        messages (Tensor): ``[P, C]`` in rulebook pair order.
        rulebook (Rulebook): the pairs; only ``out_idx``, ``offset_ptr`` and ``num_out`` are read.
        reduce (str): ``"sum"``, ``"mean"``, ``"max"`` or ``"min"`` (default: ``"sum"``).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"aggregate: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if messages.dim() != 2 or messages.size(0) != rulebook.num_pairs:
        raise ValueError(f"aggregate: messages must be [P, C] with P = {rulebook.num_pairs} (one row per pair), "
                         f"got {list(messages.shape)}")
    num_out = rulebook.num_out
    per_offset = []
    # without any pair, one empty segment reduction still gives zeros that stay on the autograd graph
    for _, s, e in rulebook.offset_slices() or [(0, 0, 0)]:
        lengths = torch.bincount(rulebook.out_idx[s:e], minlength=num_out)
        segment_reduce = "sum" if reduce == "mean" else reduce
        per_offset.append(torch.segment_reduce(messages[s:e], segment_reduce, lengths=lengths, unsafe=True,
                                               initial=0.0 if reduce in ("sum", "mean") else None))
    if reduce in ("sum", "mean"):
        out = per_offset[0]
        for part in per_offset[1:]:
            out = out + part
        if reduce == "mean":
            count = torch.bincount(rulebook.out_idx, minlength=num_out).clamp(min=1)
            out = out / count.unsqueeze(1).to(out.dtype)
        return out
    pick = torch.maximum if reduce == "max" else torch.minimum
    out = per_offset[0]
    for part in per_offset[1:]:
        out = pick(out, part)
    has_pair = torch.bincount(rulebook.out_idx, minlength=num_out) > 0
    return torch.where(has_pair.unsqueeze(1), out, torch.zeros_like(out))
