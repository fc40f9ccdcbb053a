"""The native rulebook-building kernels (``rulebook_kernels.cpp``): the numba kernels of
:mod:`irregconv.rulebook._numba_kernels` compiled ahead of time, with the same results bit for bit for any thread
count. The rulebook builders (:mod:`irregconv.rulebook`) call them when :func:`irregconv._numba.cpu_kernels` says
``"native"``.

Every function first runs its ``check_*`` function, which refuses (naming the kernel, the argument, what it got and
what would work) every buffer the kernel reads or writes that is not a plain strided CPU tensor of the dtype and
sizes it needs; the kernel checks every index it reads from data and the wrapper raises ValueError on its status.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from . import _LIBRARY, ANY_STRIDES, ROWS, _buffer, _refuse_tracing, _sizes

_INDEX_DTYPES = (torch.int32, torch.int64)


def _vector(kernel: str, name: str, x, rows=None, meaning: str = "") -> Tensor:
    """``x`` checked as an int64 CPU vector (of ``rows`` entries when given), contiguous."""
    return _buffer(kernel, name, x, torch.int64, (), rows, ANY_STRIDES, meaning).contiguous()


def _small_vector(values: Sequence[int]) -> Tensor:
    return torch.tensor([int(v) for v in values], dtype=torch.int64)


def _index_matrix(kernel: str, name: str, x, columns: int = None, strides: str = ANY_STRIDES) -> Tensor:
    """``x`` checked as an int32 or int64 CPU matrix (``columns`` wide when given) with ``strides`` (an output
    written in place: :data:`ROWS`), contiguous; errors name ``kernel`` and ``name``."""
    rows, width = _sizes(kernel, name, x, ("R", "C"))
    if x.dtype not in _INDEX_DTYPES:
        raise TypeError(f"{kernel}: {name} must be an int32 or int64 tensor, got {x.dtype}")
    return _buffer(kernel, name, x, x.dtype, (width if columns is None else columns,), rows, strides).contiguous()


def _status(kernel: str, status: int, what: str) -> None:
    if status != 0:
        raise ValueError(f"{kernel}: {what}")


def check_compact_neighbors(neighbors: Tensor) -> Tensor:
    """``neighbors [K, N_out]`` int32 or int64 checked, contiguous."""
    _refuse_tracing("compact_neighbors")
    return _index_matrix("compact_neighbors", "neighbors", neighbors)


def compact_neighbors(neighbors: Tensor, num_in: int) -> Tuple[Tensor, Tensor, Tensor]:
    """``[K, N_out]`` neighbour map (-1 or any negative = none) -> ``in_idx [P]``, ``out_idx [P]``, ``counts [K]``,
    pairs grouped by offset and sorted by output.

    Raises:
        ValueError: if an entry is ``num_in`` or more.
    """
    neighbors = check_compact_neighbors(neighbors)
    num_k, num_out = neighbors.shape
    index32 = int(neighbors.dtype == torch.int32)
    counts = torch.empty(num_k, dtype=torch.int64)
    threads = torch.get_num_threads()
    _status("compact_neighbors", _LIBRARY.count_neighbors(neighbors.data_ptr(), index32, num_k, num_out, int(num_in),
                                                          counts.data_ptr(), threads),
            f"every entry of neighbors must be below num_in = {num_in} (an input row) or negative (none)")
    total = int(counts.sum())
    in_idx, out_idx = torch.empty(total, dtype=torch.int64), torch.empty(total, dtype=torch.int64)
    _status("compact_neighbors", _LIBRARY.compact_neighbors(neighbors.data_ptr(), index32, num_k, num_out,
                                                            counts.data_ptr(), in_idx.data_ptr(), out_idx.data_ptr(),
                                                            total, threads),
            "neighbors changed while it was compacted")
    return in_idx, out_idx, counts


def check_merge_neighbors(sorted_keys: Tensor, order: Tensor, coords: Tensor, displacements: Tensor,
                          half: Tensor, mirrored: Tensor, neighbors: Tensor):
    """The arguments of :func:`merge_neighbors` checked, as plain contiguous tensors."""
    kernel = "merge_neighbors"
    _refuse_tracing(kernel)
    sorted_keys = _vector(kernel, "sorted_keys", sorted_keys)
    n = sorted_keys.numel()
    order = _vector(kernel, "order", order, n, "one per key")
    coords = _index_matrix(kernel, "coords", coords)
    dims = coords.size(1) - 1
    if coords.size(0) != n or dims < 1:
        raise ValueError(f"{kernel}: coords must be [N, 1 + D] with one row per key ({n}), got {list(coords.shape)}")
    num_k = _sizes(kernel, "displacements", displacements, ("K", "D"))[0]
    displacements = _buffer(kernel, "displacements", displacements, torch.int64, (dims,), strides=ANY_STRIDES)
    half = _vector(kernel, "half", half)
    mirrored = _vector(kernel, "mirrored", mirrored, half.numel(), "one per row of half")
    neighbors = _index_matrix(kernel, "neighbors", neighbors, n, ROWS)
    if neighbors.size(0) != num_k:
        raise ValueError(f"{kernel}: neighbors must have a row per displacement ({num_k}), got {list(neighbors.shape)}")
    if neighbors.dtype == torch.int32 and n > torch.iinfo(torch.int32).max:
        raise ValueError(f"{kernel}: an int32 neighbors map holds rows below 2^31, got {n} sites")
    return sorted_keys, order, coords, displacements.contiguous(), half, mirrored, neighbors


def merge_neighbors(sorted_keys: Tensor, order: Tensor, coords: Tensor, displacements: Tensor,
                    radices: Sequence[int], half: Tensor, mirrored: Tensor, neighbors: Tensor) -> Tensor:
    """Fill rows ``half[h]`` and ``mirrored[h]`` of the ``[K, N]`` neighbour map ``neighbors`` (int32 or int64,
    contiguous, written in place) by a merge join over the sites' ascending keys ``sorted_keys [N]`` (``order``:
    their rows of ``coords [N, 1 + D]``), for ``displacements [K, D]`` over the key space ``radices [1 + D]``.

    Raises:
        ValueError: if a row of ``half`` / ``mirrored`` is outside the map or repeats, or ``order`` leaves the sites.
    """
    sorted_keys, order, coords, displacements, half, mirrored, neighbors = check_merge_neighbors(
        sorted_keys, order, coords, displacements, half, mirrored, neighbors)
    n, dims = coords.size(0), coords.size(1) - 1
    radices = _small_vector(radices)
    if radices.numel() != dims + 1 or bool((radices < 1).any()):
        raise ValueError(f"merge_neighbors: radices must be {dims + 1} positive extents, got {radices.tolist()}")
    status = _LIBRARY.merge_neighbors(sorted_keys.data_ptr(), order.data_ptr(), coords.data_ptr(),
                                      int(coords.dtype == torch.int32), n, dims, displacements.data_ptr(),
                                      displacements.size(0), radices.data_ptr(), half.data_ptr(), mirrored.data_ptr(),
                                      half.numel(), neighbors.data_ptr(), int(neighbors.dtype == torch.int32),
                                      torch.get_num_threads())
    _status("merge_neighbors", status, f"half and mirrored must name distinct rows in [0, {displacements.size(0)}) "
                                       f"and order must hold rows in [0, {n})")
    return neighbors


def check_candidate_pairs(coords: Tensor, tap_of: Tensor, axis_taps: Tensor, axis_counts: Tensor):
    """The arrays of :func:`candidate_pairs` checked, as plain contiguous tensors; the sizes they must agree on
    (``axis_counts`` within ``axis_taps``' width, their product ``tap_of``'s length) the kernel checks."""
    kernel = "candidate_pairs"
    _refuse_tracing(kernel)
    coords = _index_matrix(kernel, "coords", coords)
    dims = coords.size(1) - 1
    width = _sizes(kernel, "axis_taps", axis_taps, ("D", "U"))[1]
    axis_taps = _buffer(kernel, "axis_taps", axis_taps, torch.int64, (width,), dims, ANY_STRIDES).contiguous()
    axis_counts = _vector(kernel, "axis_counts", axis_counts, dims, "one per axis")
    return coords, _vector(kernel, "tap_of", tap_of), axis_taps, axis_counts


def candidate_pairs(coords: Tensor, tap_of: Tensor, axis_taps: Tensor, axis_counts: Tensor, stride: Sequence[int],
                    padding: Sequence[int], dilation: Sequence[int], out_shape: Sequence[int], transposed: bool,
                    num_k: int, blocks: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Every (tap, input) that reaches an output site: ``keys [V]``, ``inputs [V]`` and ``counts [K]``, grouped by
    tap, inputs ascending within a tap (see :func:`irregconv.rulebook._numba_kernels.candidate_pairs`). Two passes
    over ``blocks`` ranges of inputs: count, then fill.

    Raises:
        ValueError: if the geometry's arrays disagree (an axis count outside ``axis_taps``, ``tap_of`` not their
            product long, a stride below 1) or ``tap_of`` names a tap ``num_k`` or above.
    """
    coords, tap_of, axis_taps, axis_counts = check_candidate_pairs(coords, tap_of, axis_taps, axis_counts)
    n, dims = coords.size(0), coords.size(1) - 1
    geometry = [_small_vector(v) for v in (stride, padding, dilation, out_shape)]
    if any(v.numel() != dims for v in geometry) or num_k < 0 or blocks < 1:
        raise ValueError(f"candidate_pairs: stride, padding, dilation and out_shape need {dims} entries each, num_k "
                         f">= 0 and blocks >= 1, got {[v.tolist() for v in geometry]}, {num_k} and {blocks}")
    block_counts = torch.empty(blocks, num_k, dtype=torch.int64)
    arguments = (coords.data_ptr(), int(coords.dtype == torch.int32), n, dims, tap_of.data_ptr(), tap_of.numel(),
                 axis_taps.data_ptr(), axis_taps.size(1), axis_counts.data_ptr(),
                 *(v.data_ptr() for v in geometry), int(transposed), num_k, blocks)
    threads = torch.get_num_threads()
    what = ("axis_counts must lie in [1, axis_taps.size(1)] with tap_of their product long, strides >= 1 and every "
            f"tap_of entry below num_k = {num_k}")
    _status("candidate_pairs", _LIBRARY.candidate_counts(*arguments, block_counts.data_ptr(), threads), what)
    counts = block_counts.sum(dim=0)
    total = int(counts.sum())
    keys, inputs = torch.empty(total, dtype=torch.int64), torch.empty(total, dtype=torch.int64)
    _status("candidate_pairs", _LIBRARY.candidate_fill(*arguments, block_counts.data_ptr(), keys.data_ptr(),
                                                       inputs.data_ptr(), total, threads), what)
    return keys, inputs, counts


def argsort_keys(keys: Tensor, key_bound: int) -> Tuple[Tensor, Tensor]:
    """Stable ascending sort of ``keys [V]`` in ``[0, key_bound)``: ``(sorted_keys, order)`` (an LSD radix sort of
    12-bit digits).

    Raises:
        ValueError: if a key lies outside ``[0, key_bound)``.
    """
    _refuse_tracing("argsort_keys")
    keys = _vector("argsort_keys", "keys", keys)
    sorted_keys, order = torch.empty_like(keys), torch.empty_like(keys)
    _status("argsort_keys", _LIBRARY.argsort_keys(keys.data_ptr(), keys.numel(), int(key_bound),
                                                  sorted_keys.data_ptr(), order.data_ptr()),
            f"every key must lie in [0, key_bound = {key_bound})")
    return sorted_keys, order


def rank_sorted(sorted_keys: Tensor) -> Tuple[Tensor, Tensor]:
    """``rank [V]`` of each of the ascending ``sorted_keys`` among the distinct ones, and those ``unique``."""
    _refuse_tracing("rank_sorted")
    sorted_keys = _vector("rank_sorted", "sorted_keys", sorted_keys)
    rank, unique = torch.empty_like(sorted_keys), torch.empty_like(sorted_keys)
    count = _LIBRARY.rank_sorted(sorted_keys.data_ptr(), sorted_keys.numel(), rank.data_ptr(), unique.data_ptr())
    return rank, unique[:count].clone()


def candidate_outputs(rank: Tensor, order: Tensor, counts: Tensor) -> Tuple[Tensor, bool]:
    """The output row each candidate reaches (``rank[q]`` belongs to candidate ``order[q]``), in candidate order, and
    whether those rows ascend within every tap's run of ``counts`` candidates.

    Raises:
        ValueError: if ``order`` leaves the candidates or ``counts`` does not add up to them.
    """
    kernel = "candidate_outputs"
    _refuse_tracing(kernel)
    rank = _vector(kernel, "rank", rank)
    order = _vector(kernel, "order", order, rank.numel(), "one per candidate")
    counts = _vector(kernel, "counts", counts)
    outputs = torch.empty_like(rank)
    status = _LIBRARY.candidate_outputs(rank.data_ptr(), order.data_ptr(), rank.numel(), counts.data_ptr(),
                                        counts.numel(), outputs.data_ptr(), torch.get_num_threads())
    if status == 2:
        raise ValueError(f"{kernel}: order must hold positions in [0, {rank.numel()}) and counts (non-negative) must "
                         f"add up to them")
    return outputs, status == 0


def fill_new_neighbors(rank: Tensor, order: Tensor, pair_offset: Tensor, pair_input: Tensor,
                       neighbors: Tensor) -> Tensor:
    """``neighbors [K, N_out]`` (int32 or int64, contiguous, written in place): -1, then for candidate
    ``c = order[q]`` the input ``pair_input[c]`` at ``(pair_offset[c], rank[q])``.

    Raises:
        ValueError: if ``order`` leaves the candidates or an offset or rank leaves the map.
    """
    kernel = "fill_new_neighbors"
    _refuse_tracing(kernel)
    rank = _vector(kernel, "rank", rank)
    v = rank.numel()
    order = _vector(kernel, "order", order, v, "one per candidate")
    pair_offset = _vector(kernel, "pair_offset", pair_offset, v, "one per candidate")
    pair_input = _vector(kernel, "pair_input", pair_input, v, "one per candidate")
    neighbors = _index_matrix(kernel, "neighbors", neighbors, strides=ROWS)
    status = _LIBRARY.fill_new_neighbors(rank.data_ptr(), order.data_ptr(), v, pair_offset.data_ptr(),
                                         pair_input.data_ptr(), neighbors.data_ptr(),
                                         int(neighbors.dtype == torch.int32), neighbors.size(0), neighbors.size(1),
                                         torch.get_num_threads())
    _status(kernel, status, f"order must hold positions in [0, {v}), pair_offset rows of neighbors and rank its "
                            f"columns ({list(neighbors.shape)})")
    return neighbors


def sort_pairs(offset: Tensor, out_idx: Tensor, in_idx: Tensor, num_k: int, num_out: int, num_in: int) -> Tensor:
    """The permutation sorting pairs by (offset, out_idx, in_idx), ties kept in input order (three stable counting
    passes).

    Raises:
        ValueError: if an index lies outside ``[0, num_in)``, ``[0, num_out)`` or (``num_k > 1``) ``[0, num_k)``.
    """
    kernel = "sort_pairs"
    _refuse_tracing(kernel)
    in_idx = _vector(kernel, "in_idx", in_idx)
    out_idx = _vector(kernel, "out_idx", out_idx, in_idx.numel(), "one per pair")
    offset = _vector(kernel, "offset", offset, in_idx.numel(), "one per pair")
    order = torch.empty_like(in_idx)
    status = _LIBRARY.sort_pairs(offset.data_ptr(), out_idx.data_ptr(), in_idx.data_ptr(), in_idx.numel(),
                                 int(num_k), int(num_out), int(num_in), order.data_ptr())
    _status(kernel, status, f"every pair needs an input row in [0, {num_in}), an output row in [0, {num_out}) and an "
                            f"offset in [0, {num_k})")
    return order
