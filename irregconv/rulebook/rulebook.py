"""The rulebook: per kernel offset, which input rows feed which output rows.

Invariants every builder guarantees (and the tests check):

* pairs are grouped by kernel offset (CSR ``offset_ptr [K + 1]``: offset ``k`` owns pairs
  ``offset_ptr[k]:offset_ptr[k + 1]``) and sorted by ``out_idx`` within an offset (ties by ``in_idx``);
* ``0 <= in_idx < num_in``, ``0 <= out_idx < num_out``, both int64 on the device of the coordinates;
* for convolution rulebooks (``injective=True``) each offset maps inputs to outputs one to one, so no
  (output, offset) pair repeats and scatters within an offset never collide;
* ``identity_offset``, when set, is an offset whose pairs are exactly ``i -> i`` for every row.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .._numba import cpu_kernels, kernels, native_kernels
from ..workspace import scratch_rows


@dataclass(frozen=True)
class Geometry:
    """How a rulebook was made: enough to check that reusing it is right.

    ``kind`` is one of ``"subm"``, ``"strided"``, ``"transposed"``, ``"inverse"``, ``"dense"``, ``"graph"``.
    """
    kind: str
    region_key: tuple = ()
    stride: Tuple[int, ...] = ()
    padding: Tuple[int, ...] = ()
    dilation: Tuple[int, ...] = ()
    output_padding: Tuple[int, ...] = ()
    in_spatial_shape: Tuple[int, ...] = ()
    out_spatial_shape: Tuple[int, ...] = ()

    @property
    def kernel_size(self) -> Tuple[int, ...]:
        return self.region_key[1] if self.region_key else ()

    def transposed(self, kind: str) -> "Geometry":
        return dataclasses.replace(self, kind=kind, in_spatial_shape=self.out_spatial_shape,
                                   out_spatial_shape=self.in_spatial_shape)


@dataclass(frozen=True, eq=False)
class Rulebook:
    """Pairs ``(in_idx[p], out_idx[p])`` grouped by kernel offset. See the module docstring for invariants.

    Attributes:
        in_idx (Tensor): ``[P]`` int64 input rows.
        out_idx (Tensor): ``[P]`` int64 output rows.
        offset_ptr (Tensor): ``[K + 1]`` int64 on the CPU, CSR over kernel offsets.
        num_in (int): ``N_in``.
        num_out (int): ``N_out``.
        geometry (Geometry): how it was built.
        identity_offset (int, optional): offset whose pairs are ``i -> i`` for all ``N_in == N_out`` rows.
        injective (bool): each offset is one to one (every convolution rulebook; not graphs).
        pair_ids (Tensor, optional): ``[P]`` for graph rulebooks, the edge id of each pair.
    """
    in_idx: Tensor
    out_idx: Tensor
    offset_ptr: Tensor
    num_in: int
    num_out: int
    geometry: Geometry
    identity_offset: Optional[int] = None
    injective: bool = True
    pair_ids: Optional[Tensor] = None
    _derived: Dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kernel_volume(self) -> int:
        return self.offset_ptr.numel() - 1

    @property
    def num_pairs(self) -> int:
        return self.in_idx.numel()

    @property
    def device(self) -> torch.device:
        return self.in_idx.device

    def offset_slices(self):
        """``(k, start, end)`` for every offset with at least one pair."""
        slices = self._derived.get("offset_slices")
        if slices is None:
            ptr = self.offset_ptr.tolist()
            slices = [(k, ptr[k], ptr[k + 1]) for k in range(len(ptr) - 1) if ptr[k + 1] > ptr[k]]
            self._derived["offset_slices"] = slices
        return slices

    def counts(self) -> Tensor:
        """``[K]`` number of pairs per offset."""
        return self.offset_ptr.diff()

    def transpose(self) -> "Rulebook":
        """The rulebook with inputs and outputs swapped (re-sorted); ``rb.transpose().transpose()`` equals ``rb``.

        The transpose of a strided rulebook is the inverse convolution's rulebook: it maps back exactly
        onto the input sites the strided convolution saw.
        """
        cached = self._derived.get("transpose")
        if cached is not None:
            return cached
        kind = {"strided": "inverse", "inverse": "strided"}.get(self.geometry.kind, self.geometry.kind)
        mirror = self._derived.get("mirror")
        if mirror is not None:
            # a submanifold rulebook of a symmetric region: the swapped pairs of offset k are exactly the pairs of
            # offset mirror[k], already sorted by output, so the transpose reorders whole offsets (no sort)
            return self._transpose_by_mirror(mirror)
        k_of_pair = rows_from_pointer(self.offset_ptr.to(self.device))
        order = sort_pairs(k_of_pair, self.out_idx, self.in_idx, self.num_out, self.num_in)
        return self._link_transpose(Rulebook(
            in_idx=self.out_idx[order], out_idx=self.in_idx[order], offset_ptr=self.offset_ptr,
            num_in=self.num_out, num_out=self.num_in, geometry=self.geometry.transposed(kind),
            identity_offset=self.identity_offset, injective=self.injective,
            pair_ids=None if self.pair_ids is None else self.pair_ids[order]), order)

    def _transpose_by_mirror(self, mirror) -> "Rulebook":
        ptr = self.offset_ptr.tolist()
        order = torch.cat([torch.arange(ptr[m], ptr[m + 1], device=self.device) for m in mirror])
        result = Rulebook(in_idx=self.in_idx[order], out_idx=self.out_idx[order],
                          offset_ptr=pointer_from_counts(self.counts()[mirror]),
                          num_in=self.num_out, num_out=self.num_in, geometry=self.geometry,
                          identity_offset=self.identity_offset, injective=self.injective,
                          pair_ids=None if self.pair_ids is None else self.pair_ids[order])
        result._derived["mirror"] = mirror
        return self._link_transpose(result, order)

    def _link_transpose(self, result: "Rulebook", order: Tensor) -> "Rulebook":
        """Cache ``result`` as the transpose, whose pair ``p`` is pair ``order[p]`` of this rulebook."""
        result._derived["transpose"] = self
        # pair p of the transpose is pair order[p] of self, and the other way round with the inverse
        result._derived["pair_order"] = order
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        self._derived["pair_order"] = inverse
        self._derived["transpose"] = result
        return result

    def to(self, device) -> "Rulebook":
        device = torch.device(device)
        if device == self.device:
            return self
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return dataclasses.replace(self, in_idx=move(self.in_idx), out_idx=move(self.out_idx),
                                   pair_ids=move(self.pair_ids), _derived={})

    def __repr__(self) -> str:
        return (f"Rulebook(kind={self.geometry.kind!r}, K={self.kernel_volume}, pairs={self.num_pairs}, "
                f"num_in={self.num_in}, num_out={self.num_out})")


def sort_pairs(offset: Tensor, in_idx: Tensor, out_idx: Tensor, num_in: int, num_out: int) -> Tensor:
    """Permutation sorting pairs by (offset, out_idx, in_idx), the rulebook's canonical order; equal pairs
    (repeated graph edges) keep their input order."""
    path = cpu_kernels(in_idx)
    if path != "torch":
        num_k = int(offset.max()) + 1 if offset.numel() else 1
        arrays = [x.long().contiguous() for x in (offset, out_idx, in_idx)]
        if path == "native":
            return native_kernels("rulebook").sort_pairs(*arrays, num_k, max(num_out, 1), max(num_in, 1))
        order, valid = kernels("irregconv.rulebook._numba_kernels").sort_pairs(
            *(x.numpy() for x in arrays), num_k, max(num_out, 1), max(num_in, 1))
        if not valid:
            raise ValueError(f"sort_pairs: every pair needs an input row in [0, {num_in}), an output row in "
                             f"[0, {num_out}) and an offset >= 0")
        return torch.from_numpy(order)
    key = (offset * num_out + out_idx) * max(num_in, 1) + in_idx
    return torch.argsort(key, stable=True)


def pointer_from_counts(counts: Tensor) -> Tensor:
    """The CSR pointer of per-row ``counts [R]``: ``[R + 1]`` int64, 0 then their running sums, on their device."""
    pointer = torch.zeros(counts.numel() + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts, 0, out=pointer[1:])
    return pointer


def rows_from_pointer(pointer: Tensor) -> Tensor:
    """The inverse of :func:`pointer_from_counts`: the row of every entry of a CSR ``pointer [R + 1]``,
    ``[pointer[-1]]`` int64 on its device."""
    return torch.repeat_interleave(torch.arange(pointer.numel() - 1, device=pointer.device), pointer.diff())


def neighbor_map_buffer(name: str, num_offsets: int, num_out: int) -> Tensor:
    """An uninitialised ``[K, N_out]`` int32 CPU neighbour map from the reused scratch buffers of
    :mod:`irregconv.workspace` (a fresh int64 map cost the builders as much in page faults as filling it).
    Valid until the next call with ``name``."""
    return scratch_rows(name, num_offsets, num_out, torch.empty(0, dtype=torch.int32))


def rulebook_from_neighbors(neighbors: Tensor, num_in: int, geometry: Geometry,
                            identity_offset: Optional[int] = None) -> Rulebook:
    """Compact a neighbour map into a rulebook.

    Args:
        neighbors (Tensor): ``[K, N_out]`` int64 (int32 on the CPU), the input row feeding output ``o`` through
            offset ``k``, or -1. Row-major compaction yields pairs sorted by (offset, out) directly.
    """
    path = cpu_kernels(neighbors)
    if path == "native":
        in_idx, out_idx, counts = native_kernels("rulebook").compact_neighbors(neighbors, num_in)
    elif path == "numba":
        _numba_kernels = kernels("irregconv.rulebook._numba_kernels")
        in_idx, out_idx, counts = (torch.from_numpy(a) for a in
                                   _numba_kernels.compact_neighbors(neighbors.contiguous().numpy()))
    else:
        valid = neighbors >= 0
        k_idx, out_idx = valid.nonzero(as_tuple=True)
        in_idx = neighbors[k_idx, out_idx]
        counts = valid.sum(dim=1).cpu()
    return Rulebook(in_idx=in_idx, out_idx=out_idx, offset_ptr=pointer_from_counts(counts), num_in=num_in,
                    num_out=neighbors.size(1), geometry=geometry, identity_offset=identity_offset)


def rulebook_from_pairs(offset: Tensor, in_idx: Tensor, out_idx: Tensor, kernel_volume: int, num_in: int,
                        num_out: int, geometry: Geometry, injective: bool = True,
                        pair_ids: Optional[Tensor] = None) -> Rulebook:
    """Sort unordered pairs into a rulebook (canonical order, CSR over offsets)."""
    order = sort_pairs(offset, in_idx, out_idx, num_in, num_out)
    counts = torch.bincount(offset, minlength=kernel_volume).cpu()
    return Rulebook(in_idx=in_idx[order], out_idx=out_idx[order], offset_ptr=pointer_from_counts(counts), num_in=num_in,
                    num_out=num_out, geometry=geometry, injective=injective,
                    pair_ids=None if pair_ids is None else pair_ids[order])
