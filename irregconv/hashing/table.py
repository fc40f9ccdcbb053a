"""Hash table from int64 coordinate keys to row indices, with batched lookup (missing -> -1).

Two implementations behind one interface:

* ``"torch"``: the reference, sort + ``searchsorted``; runs on any device.
* ``"numba"``: open addressing compiled with numba (CPU tensors only), several times faster.

``backend="auto"`` picks numba for CPU tensors when numba is installed, torch otherwise. Both give
identical results (tested with hypothesis).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from .._numba import kernels
from ..typing import WITH_NUMBA
from .keys import key_radices, pack_keys

_BACKENDS = ("torch", "numba")


def available_backends() -> List[str]:
    """Backends usable here, reference first."""
    return ["torch"] + (["numba"] if WITH_NUMBA else [])


def _kernels():
    return kernels("irregconv.hashing._numba_kernels")


class HashTable:
    """Map unique int64 ``keys [N]`` to their row index ``0..N-1``.

    Args:
        keys (Tensor): ``[N]`` int64, unique, non-negative.
        backend (str): ``"auto"``, ``"torch"`` or ``"numba"`` (default: ``"auto"``).

    Raises:
        ValueError: if ``keys`` holds a duplicate (naming its row) or the backend is unknown.
    """

    def __init__(self, keys: Tensor, backend: str = "auto"):
        if backend not in ("auto",) + _BACKENDS:
            raise ValueError(f"HashTable: backend must be one of 'auto', 'torch', 'numba', got {backend!r}")
        if backend == "auto":
            backend = "numba" if (WITH_NUMBA and keys.device.type == "cpu") else "torch"
        if backend == "numba" and keys.device.type != "cpu":
            raise ValueError(f"HashTable: backend 'numba' needs CPU keys, got keys on {keys.device}; "
                             f"use backend='torch' or 'auto'")
        self.backend = backend
        self.device = keys.device
        self.num_keys = keys.numel()
        keys = keys.long()
        if backend == "torch":
            self._sorted, self._perm = torch.sort(keys)
            if self.num_keys > 1:
                dup = (self._sorted[1:] == self._sorted[:-1]).nonzero()
                if dup.numel():
                    row = int(self._perm[int(dup[0]) + 1])
                    raise ValueError(f"HashTable: keys has a duplicate at row {row} "
                                     f"(key {int(self._sorted[int(dup[0])])}); keys must be unique")
        else:
            capacity = 1 << max(4, (2 * max(self.num_keys, 1) - 1).bit_length())
            self._slots_key, self._slots_val, duplicate = _kernels().build(keys.numpy(), capacity)
            if duplicate >= 0:
                raise ValueError(f"HashTable: keys has a duplicate at row {duplicate} "
                                 f"(key {int(keys[duplicate])}); keys must be unique")

    def lookup(self, query: Tensor) -> Tensor:
        """Rows of ``query`` keys (any shape, int64); -1 where missing or where the query is negative."""
        shape = query.shape
        query = query.reshape(-1).long()
        if self.backend == "numba":
            out = torch.from_numpy(_kernels().lookup(self._slots_key, self._slots_val, query.contiguous().numpy()))
        elif self.num_keys == 0:
            out = torch.full_like(query, -1)
        else:
            pos = torch.searchsorted(self._sorted, query).clamp_(max=self.num_keys - 1)
            hit = (self._sorted[pos] == query) & (query >= 0)
            out = torch.where(hit, self._perm[pos], torch.full_like(query, -1))
        return out.reshape(shape)

    def lookup_neighbors(self, coords: Tensor, displacements: Tensor, spatial_shape: Sequence[int],
                         batch_size: int) -> Tensor:
        """Rows of the sites ``coords + displacement`` for every displacement.

        Args:
            coords (Tensor): ``[N, 1 + D]`` integer sites (batch in column 0), inside the key space.
            displacements (Tensor): ``[K, D]`` int64 spatial displacements.

        Returns:
            Tensor: ``[K, N]`` int64, the row of ``coords[i] + displacements[k]`` or -1 when that site is
            absent or falls outside ``spatial_shape``.
        """
        radices = key_radices(spatial_shape, batch_size)
        if coords.dim() != 2 or displacements.dim() != 2 or not (
                coords.size(1) - 1 == displacements.size(1) == len(radices) - 1):
            raise ValueError(f"HashTable.lookup_neighbors: coords [N, 1 + D], displacements [K, D] and spatial_shape "
                             f"[D] must agree on D, got {list(coords.shape)}, {list(displacements.shape)} and "
                             f"{list(spatial_shape)}")
        if self.backend == "numba":
            out = _kernels().lookup_neighbors(
                self._slots_key, self._slots_val, coords.contiguous().numpy(),
                displacements.long().contiguous().numpy(), np.asarray(radices, dtype=np.int64))
            return torch.from_numpy(out)
        spatial = coords[:, 1:].long().unsqueeze(0) + displacements.long().to(coords.device).unsqueeze(1)
        extent = torch.tensor(radices[1:], device=coords.device)
        inside = ((spatial >= 0) & (spatial < extent)).all(dim=2)
        batch = coords[:, 0].long().expand(displacements.size(0), -1)
        moved = torch.cat([batch.unsqueeze(2), spatial], dim=2).reshape(-1, 1 + spatial.size(2))
        # sites outside the grid are packed as site 0 and then masked, so no key overflows
        moved = torch.where(inside.reshape(-1, 1), moved, torch.zeros_like(moved))
        keys = pack_keys(moved, radices[1:], batch_size, check=False)
        keys = torch.where(inside.reshape(-1), keys, torch.full_like(keys, -1))
        return self.lookup(keys).reshape(displacements.size(0), -1)
