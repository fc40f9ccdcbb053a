"""Hash table from int64 coordinate keys to row indices, with batched lookup (missing -> -1).

Three implementations behind one interface:

* ``"torch"``: the reference, sort + ``searchsorted``; runs on any device.
* ``"native"``: open addressing in the native extension (CPU tensors only), several times faster.
* ``"numba"``: the same table compiled with numba, for machines where the extension was not built.

``backend="auto"`` takes the CPU kernels :func:`irregconv._numba.cpu_kernels` names for the keys (native, else
numba, else torch). All give identical results (tested with hypothesis); native and numba the same tables.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from .._numba import available_cpu_kernels, cpu_kernels, kernels, native_kernels
from .keys import key_radices, pack_keys

_BACKENDS = ("torch", "native", "numba")


def available_backends() -> List[str]:
    """Backends usable here, reference first."""
    return ["torch"] + [path for path in available_cpu_kernels() if path != "torch"]


def _kernels():
    return kernels("irregconv.hashing._numba_kernels")


class HashTable:
    """Map unique int64 ``keys [N]`` to their row index ``0..N-1``.

    Args:
        keys (Tensor): ``[N]`` int64, unique, non-negative.
        backend (str): ``"auto"``, ``"torch"``, ``"native"`` or ``"numba"`` (default: ``"auto"``).

    Raises:
        ValueError: if ``keys`` holds a duplicate (naming its row) or the backend is unknown.
    """

    def __init__(self, keys: Tensor, backend: str = "auto"):
        if backend not in ("auto",) + _BACKENDS:
            raise ValueError(f"HashTable: backend must be one of 'auto', 'torch', 'native', 'numba', got {backend!r}")
        if backend == "auto":
            backend = cpu_kernels(keys)
        if backend != "torch" and keys.device.type != "cpu":
            raise ValueError(f"HashTable: backend {backend!r} needs CPU keys, got keys on {keys.device}; "
                             f"use backend='torch' or 'auto'")
        if backend not in available_backends():
            raise ValueError(f"HashTable: backend {backend!r} is not available here; use one of {available_backends()} "
                             f"or 'auto'")
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
            return
        capacity = 1 << max(4, (2 * max(self.num_keys, 1) - 1).bit_length())
        if backend == "native":
            self._slots_key, self._slots_val, duplicate = native_kernels("hashing").build(keys, capacity)
        else:
            slots_key, slots_val, duplicate = _kernels().build(keys.numpy(), capacity)
            self._slots_key, self._slots_val = torch.from_numpy(slots_key), torch.from_numpy(slots_val)
        if duplicate >= 0:
            raise ValueError(f"HashTable: keys has a duplicate at row {duplicate} "
                             f"(key {int(keys[duplicate])}); keys must be unique")

    def lookup(self, query: Tensor) -> Tensor:
        """Rows of ``query`` keys (any shape, int64); -1 where missing or where the query is negative."""
        shape = query.shape
        query = query.reshape(-1).long()
        if self.backend == "native":
            out = native_kernels("hashing").lookup(self._slots_key, self._slots_val, query)
        elif self.backend == "numba":
            out = torch.from_numpy(_kernels().lookup(self._slots_key.numpy(), self._slots_val.numpy(),
                                                     query.contiguous().numpy()))
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
        if self.backend == "native":
            return native_kernels("hashing").lookup_neighbors(self._slots_key, self._slots_val, coords,
                                                              displacements.long(), radices)
        if self.backend == "numba":
            out = _kernels().lookup_neighbors(
                self._slots_key.numpy(), self._slots_val.numpy(), coords.contiguous().numpy(),
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
