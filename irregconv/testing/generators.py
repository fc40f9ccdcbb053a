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


def draw_sites_and_region(draw, max_extent: int, max_sites: int):
    """Draw a random sparse-convolution case for a hypothesis ``@st.composite`` strategy (``draw`` is its
    argument; needs ``hypothesis``).

    Draws, in this order: 1 to 3 spatial dims, a shape with extents in ``[1, max_extent]``, a batch size in
    ``[1, 3]``, up to ``max_sites`` sites per batch item (:func:`random_coords` with a drawn seed), and a
    cube or cross :class:`~irregconv.rulebook.KernelRegion` with kernel sizes in ``[1, 4]``.

    Returns ``(coords, shape, batch_size, region, axes)`` with ``axes(lo, hi)`` drawing one more per-axis
    tuple (e.g. stride, padding or dilation) with entries in ``[lo, hi]``.
    """
    from hypothesis import strategies as st

    from ..rulebook import KernelRegion

    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, max_extent), min_size=dims, max_size=dims)))
    batch_size = draw(st.integers(1, 3))
    coords = random_coords(draw(st.integers(0, max_sites)), shape, batch_size,
                           torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1))))
    axes = lambda lo, hi: tuple(draw(st.lists(st.integers(lo, hi), min_size=dims, max_size=dims)))  # noqa: E731
    kind = draw(st.sampled_from(["cube", "cross"]))
    ks = axes(1, 4)
    region = KernelRegion.cube(ks, dims) if kind == "cube" else KernelRegion.cross(ks, dims)
    return coords, shape, batch_size, region, axes
