"""Graph rulebook: one kernel offset whose pairs are the edges (source -> target)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .rulebook import Geometry, Rulebook, rulebook_from_pairs


def check_edge_index(edge_index: Tensor, num_nodes: int, num_targets: Optional[int] = None,
                     owner: str = "build_graph_rulebook") -> None:
    """Raise a clear error unless ``edge_index`` is an integer ``[2, E]`` tensor whose sources lie in
    ``[0, num_nodes)`` and targets in ``[0, num_targets)`` (default ``num_nodes``)."""
    num_targets = num_nodes if num_targets is None else num_targets
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{owner}: edge_index must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{owner}: edge_index must be int64 (or int32), got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{owner}: edge_index must have shape [2, E] (row 0 source, row 1 target), "
                         f"got {list(edge_index.shape)}")
    for row, name, limit in ((0, "source", num_nodes), (1, "target", num_targets)):
        if edge_index.size(1) == 0:
            break
        lo, hi = int(edge_index[row].min()), int(edge_index[row].max())
        if lo < 0:
            raise ValueError(f"{owner}: edge_index has a negative {name} index {lo}; indices must be in [0, {limit})")
        if hi >= limit:
            raise ValueError(f"{owner}: edge_index has {name} index {hi} but there are only {limit} nodes; "
                             f"indices must be < {limit} (pass the right number of nodes or fix the edges)")


def build_graph_rulebook(edge_index: Tensor, num_nodes: int, num_out: Optional[int] = None) -> Rulebook:
    """One-offset rulebook: pair ``p`` sends node ``edge_index[0, e]`` to node ``edge_index[1, e]``.

    Pairs are sorted by (target, source), i.e. CSR order of the adjacency ``A[target, source]``;
    ``pair_ids[p]`` is the edge id ``e`` of pair ``p`` so per-edge values (edge weights, the GCN
    normalisation) become per-pair scales with ``values[rulebook.pair_ids]``. Not injective: a target
    receives many sources through the one offset, so the engine aggregates with sorted segment sums.

    Args:
        edge_index (Tensor): ``[2, E]`` int64, row 0 source, row 1 target.
        num_nodes (int): number of source nodes ``N_in`` (and targets unless ``num_out`` is given).
    """
    num_out = num_nodes if num_out is None else num_out
    check_edge_index(edge_index, num_nodes, num_out)
    src, dst = edge_index[0].long(), edge_index[1].long()
    return rulebook_from_pairs(torch.zeros_like(src), src, dst, 1, num_nodes, num_out, Geometry("graph"),
                               injective=False, pair_ids=torch.arange(src.numel(), device=src.device))
