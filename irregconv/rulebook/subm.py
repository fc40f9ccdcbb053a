"""Submanifold rulebook: output sites are the input sites (Graham et al., arXiv:1706.01307)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..hashing import HashTable, pack_keys
from .region import KernelRegion
from .rulebook import Geometry, Rulebook, rulebook_from_neighbors, use_numba
from .._numba import kernels


def build_subm_rulebook(coords: Tensor, spatial_shape: Sequence[int], batch_size: int, region: KernelRegion,
                        dilation: Sequence[int], table: Optional[HashTable] = None,
                        backend: str = "auto") -> Rulebook:
    """Rulebook of a submanifold convolution over the sites ``coords``.

    Output ``o`` receives input ``i`` through offset ``k`` when ``coords[i] = coords[o] + (tap_k - centre)
    * dilation`` (same batch). For symmetric regions (odd cube or cross) only half of the offsets are
    looked up: offset ``-k`` is the transpose of offset ``k``; the centre offset is the identity and is
    flagged as ``identity_offset`` so the engine runs it as a plain matmul without a gather.

    Args:
        coords (Tensor): ``[N, 1 + D]`` integer sites, unique, inside ``(batch_size, *spatial_shape)``.
        table (HashTable, optional): a table of these sites' keys (built if missing).

    Returns:
        Rulebook: ``num_in == num_out == N``, pairs sorted by (offset, out).
    """
    n = coords.size(0)
    if table is None:
        table = HashTable(pack_keys(coords, spatial_shape, batch_size), backend=backend)
    disp = region.displacements(dilation)
    mirror = region.mirror()
    centre = region.centre_index()
    geometry = Geometry("subm", region_key=region.key, dilation=tuple(dilation),
                        in_spatial_shape=tuple(spatial_shape), out_spatial_shape=tuple(spatial_shape))
    if mirror is None:
        neighbors = table.lookup_neighbors(coords, disp, spatial_shape, batch_size).to(coords.device)
        return rulebook_from_neighbors(neighbors, n, geometry, identity_offset=None)
    half = [k for k in range(region.volume) if k < int(mirror[k])]
    neighbors = torch.full((region.volume, n), -1, dtype=torch.long, device=coords.device)
    if half:
        found = table.lookup_neighbors(coords, disp[half], spatial_shape, batch_size).to(coords.device)
        neighbors[half] = found
        if use_numba(neighbors):
            _numba_kernels = kernels("irregconv.rulebook._numba_kernels")
            _numba_kernels.fill_mirrors(neighbors.numpy(), torch.tensor(half).numpy(), mirror[half].numpy())
        else:
            h, o = (found >= 0).nonzero(as_tuple=True)
            neighbors[mirror[half].to(coords.device)[h], found[h, o]] = o
    if centre is not None:  # a symmetric custom region may leave the centre out (neighbors[None] is all rows)
        neighbors[centre] = torch.arange(n, device=coords.device)
    return rulebook_from_neighbors(neighbors, n, geometry, identity_offset=centre)
