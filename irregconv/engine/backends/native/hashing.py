"""The native hash-table kernels (``hash_kernels.cpp``): the numba kernels of :mod:`irregconv.hashing._numba_kernels`
compiled ahead of time, with the same tables and results bit for bit. :class:`irregconv.hashing.HashTable` (backend
``"native"``) and :func:`irregconv.hashing.unpack_keys` call them.

Every function checks every buffer the kernel reads or writes (plain strided int64 CPU tensors of consistent sizes)
before the call; the kernel bounds every probe by the table's capacity.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from . import _LIBRARY, ANY_STRIDES, _buffer, _refuse_tracing, _sizes
from .rulebook import _index_matrix, _small_vector, _vector


def build(keys: Tensor, capacity: int) -> Tuple[Tensor, Tensor, int]:
    """``(slots_key, slots_val, duplicate)``: the open-addressing table ``[capacity]`` of ``keys [N]`` (row ``i`` ->
    ``i``), and the first row whose key repeats an earlier one, or -1.

    Raises:
        ValueError: if ``capacity`` is not a power of two above ``N`` or a key is negative.
    """
    _refuse_tracing("hash_build")
    keys = _vector("hash_build", "keys", keys)
    if capacity <= keys.numel() or capacity & (capacity - 1):
        raise ValueError(f"hash_build: capacity must be a power of two above the {keys.numel()} keys, got {capacity}")
    slots_key, slots_val = torch.empty(capacity, dtype=torch.int64), torch.empty(capacity, dtype=torch.int64)
    result = _LIBRARY.hash_build(keys.data_ptr(), keys.numel(), capacity, slots_key.data_ptr(), slots_val.data_ptr())
    if result <= -3:
        row = -3 - result
        raise ValueError(f"HashTable: keys must be non-negative, got {int(keys[row])} at row {row}")
    return slots_key, slots_val, result


def check_table(kernel: str, slots_key: Tensor, slots_val: Tensor) -> Tuple[Tensor, Tensor]:
    """A table's slots checked: int64 CPU vectors of one power-of-two length, contiguous."""
    _refuse_tracing(kernel)
    slots_key = _vector(kernel, "slots_key", slots_key)
    slots_val = _vector(kernel, "slots_val", slots_val, slots_key.numel(), "one per slot")
    capacity = slots_key.numel()
    if capacity < 1 or capacity & (capacity - 1):
        raise ValueError(f"{kernel}: the table's capacity must be a power of two, got {capacity}")
    return slots_key, slots_val


def lookup(slots_key: Tensor, slots_val: Tensor, query: Tensor) -> Tensor:
    """The value of every key of ``query [Q]`` in the table, -1 where missing or negative."""
    slots_key, slots_val = check_table("hash_lookup", slots_key, slots_val)
    query = _vector("hash_lookup", "query", query)
    out = torch.empty_like(query)
    _LIBRARY.hash_lookup(slots_key.data_ptr(), slots_val.data_ptr(), slots_key.numel(), query.data_ptr(),
                         query.numel(), out.data_ptr(), torch.get_num_threads())
    return out


def lookup_neighbors(slots_key: Tensor, slots_val: Tensor, coords: Tensor, displacements: Tensor,
                     radices: Sequence[int]) -> Tensor:
    """``out [K, N]``: the value of site ``coords[i] + displacements[k]`` (batch unchanged; ``coords [N, 1 + D]``
    int32 or int64, ``displacements [K, D]``), packed over the key space ``radices [1 + D]``, or -1 when absent or
    outside the grid."""
    kernel = "hash_lookup_neighbors"
    slots_key, slots_val = check_table(kernel, slots_key, slots_val)
    coords = _index_matrix(kernel, "coords", coords)
    dims = coords.size(1) - 1
    num_disp = _sizes(kernel, "displacements", displacements, ("K", "D"))[0]
    displacements = _buffer(kernel, "displacements", displacements, torch.int64, (dims,), num_disp, ANY_STRIDES)
    displacements = displacements.contiguous()
    radices = _small_vector(radices)
    if radices.numel() != dims + 1:
        raise ValueError(f"{kernel}: radices must have {dims + 1} entries (batch and D axes), got {radices.tolist()}")
    out = torch.empty(num_disp, coords.size(0), dtype=torch.int64)
    _LIBRARY.hash_lookup_neighbors(slots_key.data_ptr(), slots_val.data_ptr(), slots_key.numel(), coords.data_ptr(),
                                   int(coords.dtype == torch.int32), coords.size(0), dims, displacements.data_ptr(),
                                   num_disp, radices.data_ptr(), out.data_ptr(), torch.get_num_threads())
    return out


def unpack(keys: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """``coords [N, 1 + D]`` int32 of ``keys [N]`` packed over ``(batch, *spatial_shape)``.

    Raises:
        ValueError: if an extent of ``spatial_shape`` is not positive.
    """
    _refuse_tracing("unpack_keys")
    keys = _vector("unpack_keys", "keys", keys)
    shape = _small_vector(spatial_shape)
    coords = torch.empty(keys.numel(), shape.numel() + 1, dtype=torch.int32)
    if _LIBRARY.unpack_keys(keys.data_ptr(), keys.numel(), shape.data_ptr(), shape.numel(), coords.data_ptr(),
                            torch.get_num_threads()):
        raise ValueError(f"unpack_keys: every extent of spatial_shape must be positive, got {shape.tolist()}")
    return coords
