"""k-nearest-neighbour graphs: the bridge from point clouds to graph layers (EdgeConv, DGCNN).

Exact brute force in chunks of query rows (pure torch, any device). Distances are computed without
the ``|a|^2 - 2ab + |b|^2`` matmul trick, whose rounding can reorder near-equal neighbours; ties are
broken by the smaller index, so the graph is deterministic.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

FLOWS = ("source_to_target", "target_to_source")


def knn_graph(pos: Tensor, k: int, batch: Optional[Tensor] = None, loop: bool = False,
              flow: str = "source_to_target", chunk_size: int = 1024) -> Tensor:
    """Edges from each point's ``k`` nearest neighbours (Euclidean) within its batch item.

    Args:
        pos (Tensor): ``[N, D]`` floating point positions (or features).
        k (int): neighbours per point; fewer where a batch item has fewer points.
        batch (Tensor, optional): ``[N]`` int64 batch index of every point, sorted or not (default: one item).
        loop (bool): count the point itself among its neighbours (default: ``False``).
        flow (str): ``"source_to_target"``: row 0 neighbour, row 1 centre, so messages flow into the
            centre (default); ``"target_to_source"``: the reverse.
        chunk_size (int): query rows per distance block (memory ``chunk_size * N``).

    Returns:
        Tensor: ``[2, E]`` int64, grouped by centre in point order, neighbours by increasing distance.

    Example:
        >>> knn_graph(torch.tensor([[0.], [1.], [3.]]), k=1)
        tensor([[1, 0, 1],
                [0, 1, 2]])
    """
    if not isinstance(pos, Tensor) or pos.dim() != 2 or not pos.dtype.is_floating_point:
        raise ValueError(f"knn_graph: pos must be a floating point [N, D] tensor, got "
                         f"{list(pos.shape) + [pos.dtype] if isinstance(pos, Tensor) else type(pos).__name__}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"knn_graph: k must be a positive int, got {k!r}")
    if flow not in FLOWS:
        raise ValueError(f"knn_graph: flow must be one of {FLOWS}, got {flow!r}")
    n = pos.size(0)
    if batch is not None and (batch.shape != (n,) or batch.device != pos.device):
        raise ValueError(f"knn_graph: batch must be a [N] = [{n}] tensor on {pos.device}, got "
                         f"{list(batch.shape)} on {batch.device}")
    kk = min(k, n)  # without loops the point itself sits at distance inf, after every real neighbour
    centres, neighbours = [], []
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=pos.device)
        dist = torch.cdist(pos[rows], pos, compute_mode="donot_use_mm_for_euclid_dist")
        if batch is not None:
            dist = dist.masked_fill(batch[rows].unsqueeze(1) != batch.unsqueeze(0), float("inf"))
        if not loop:
            dist[torch.arange(rows.numel(), device=pos.device), rows] = float("inf")
        # a stable sort orders equal distances by index; topk's tie order is unspecified
        order = torch.sort(dist, dim=1, stable=True).indices[:, :kk]
        valid = torch.isfinite(dist.gather(1, order))
        centres.append(rows.unsqueeze(1).expand_as(order)[valid])
        neighbours.append(order[valid])
    centre = torch.cat(centres) if centres else pos.new_zeros(0, dtype=torch.long)
    neighbour = torch.cat(neighbours) if neighbours else pos.new_zeros(0, dtype=torch.long)
    if flow == "source_to_target":
        return torch.stack([neighbour, centre])
    return torch.stack([centre, neighbour])

