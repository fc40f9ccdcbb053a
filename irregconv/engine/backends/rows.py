"""Deterministic row scatter-add: ``out[idx[p]] += src[p]`` for every pair ``p``, in pair order per row.

``idx`` may repeat (pairs of many kernel offsets land on one output row). On the CPU a numba kernel
splits the *output rows* into one block per thread; every thread scans all pairs and adds only those
landing in its block, so each row is summed by one thread in pair order: no atomics, and the same bits
for any thread count (rows are never split, only reassigned). Scanning the int64 indices once per
thread costs little next to moving the rows. torch's ``index_add_`` is serial on the CPU and was the
largest single cost of a sparse conv layer before this kernel (~2-4x slower at C = 16..64 on a 41k-voxel
KITTI scan).

Elsewhere (CUDA, dtypes numpy lacks, or numba missing) the caller's ``fallback_slices`` are added one by
one with ``index_add_``: each slice must be free of repeats (one kernel offset of a convolution), which
keeps even CUDA's atomic ``index_add_`` exact.
"""
from __future__ import annotations

from typing import Iterable, Tuple

import torch
from torch import Tensor

from ..._numba import kernels
from ...typing import WITH_NUMBA

_NUMBA_DTYPES = (torch.float32, torch.float64)
_kernel = None


def _numba_kernel():
    global _kernel
    if _kernel is None:
        import numba

        @numba.njit(parallel=True, cache=True)
        def scatter_add_owned(out, idx, src, blocks):
            num_rows, channels = out.shape
            for b in numba.prange(blocks):
                lo = num_rows * b // blocks
                hi = num_rows * (b + 1) // blocks
                for p in range(idx.shape[0]):
                    o = idx[p]
                    if lo <= o < hi:
                        for c in range(channels):
                            out[o, c] += src[p, c]
        _kernel = scatter_add_owned
    return _kernel


def scatter_add_rows(out: Tensor, idx: Tensor, src: Tensor, fallback_slices: Iterable[Tuple[int, int]]) -> Tensor:
    """In place ``out[idx[p], :] += src[p, :]``, rows summed in pair order.

    Args:
        out (Tensor): ``[N, C]``.
        idx (Tensor): ``[P]`` int64 rows of ``out`` (repeats allowed).
        src (Tensor): ``[P, C]``.
        fallback_slices: ``(start, end)`` ranges covering ``0..P`` in order, each without repeated
            indices; used off the numba path.
    """
    if (WITH_NUMBA and out.device.type == "cpu" and out.dtype in _NUMBA_DTYPES and src.dtype == out.dtype
            and out.is_contiguous() and not out.requires_grad):
        kernels("numba")  # matches numba's thread count to torch's (see irregconv/_numba.py)
        import numba
        blocks = max(1, min(numba.get_num_threads(), out.size(0)))
        _numba_kernel()(out.numpy(), idx.numpy(), src.contiguous().numpy(), blocks)
        return out
    for start, end in fallback_slices:
        out.index_add_(0, idx[start:end], src[start:end])
    return out
