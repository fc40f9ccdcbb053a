"""Seeded random voxel sets and graphs for tests and benchmarks."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def random_coords(num_sites: int, spatial_shape: Sequence[int], batch_size: int = 1,
                  generator: torch.Generator | None = None) -> Tensor:
    """Unique random coordinates ``[N, 1 + D]`` int32, batch index in column 0, sorted by key.

    ``num_sites`` is per batch item and is capped at the number of grid cells.
    """
    shape = tuple(int(s) for s in spatial_shape)
    cells = 1
    for s in shape:
        cells *= s
    n = min(num_sites, cells)
    rows = []
    for b in range(batch_size):
        flat = torch.randperm(cells, generator=generator)[:n].sort().values
        parts = []
        for s in reversed(shape):
            parts.append(flat % s)
            flat = flat // s
        xyz = torch.stack(parts[::-1], dim=1)
        rows.append(torch.cat([torch.full((n, 1), b, dtype=torch.long), xyz], dim=1))
    return torch.cat(rows).to(torch.int32)


def random_graph(num_nodes: int, num_edges: int, generator: torch.Generator | None = None,
                 allow_self_loops: bool = False) -> Tensor:
    """Random directed ``edge_index [2, E]`` int64 without duplicate edges."""
    src = torch.randint(0, num_nodes, (num_edges * 2,), generator=generator)
    dst = torch.randint(0, num_nodes, (num_edges * 2,), generator=generator)
    if not allow_self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    key = torch.unique(src * num_nodes + dst)
    key = key[torch.randperm(key.numel(), generator=generator)[:num_edges]]
    return torch.stack([key // num_nodes, key % num_nodes])
