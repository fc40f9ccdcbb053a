"""numba kernels for rulebook building on the CPU (imported lazily; torch fallbacks in the builders).

Every kernel writes disjoint memory per parallel iteration, so results never depend on scheduling.
"""
import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def compact_neighbors(neighbors):
    """``[K, N_out]`` neighbour map (-1 = none) -> ``in_idx [P]``, ``out_idx [P]``, ``counts [K]``,
    pairs grouped by offset and sorted by output."""
    num_k, num_out = neighbors.shape
    counts = np.zeros(num_k, dtype=np.int64)
    for k in numba.prange(num_k):
        c = 0
        for o in range(num_out):
            if neighbors[k, o] >= 0:
                c += 1
        counts[k] = c
    ptr = np.zeros(num_k + 1, dtype=np.int64)
    for k in range(num_k):
        ptr[k + 1] = ptr[k] + counts[k]
    in_idx = np.empty(ptr[num_k], dtype=np.int64)
    out_idx = np.empty(ptr[num_k], dtype=np.int64)
    for k in numba.prange(num_k):
        p = ptr[k]
        for o in range(num_out):
            i = neighbors[k, o]
            if i >= 0:
                in_idx[p] = i
                out_idx[p] = o
                p += 1
    return in_idx, out_idx, counts


@numba.njit(parallel=True, cache=True)
def fill_mirrors(neighbors, half, mirrored):
    """For each looked-up offset ``half[h]``, write its transpose into row ``mirrored[h]``."""
    num_out = neighbors.shape[1]
    for h in numba.prange(half.shape[0]):
        k = half[h]
        m = mirrored[h]
        for o in range(num_out):
            i = neighbors[k, o]
            if i >= 0:
                neighbors[m, i] = o


@numba.njit(parallel=True, cache=True)
def candidate_keys(coords, taps, stride, padding, dilation, out_shape, transposed):
    """Key (over ``(batch, *out_shape)``) of the output site each input reaches through each tap, or -1.

    Strided: ``o = (x + padding - tap * dilation) / stride`` when divisible; transposed:
    ``o = x * stride - padding + tap * dilation``; valid when inside ``out_shape``.
    """
    n = coords.shape[0]
    num_k, dims = taps.shape
    keys = np.empty((num_k, n), dtype=np.int64)
    for i in numba.prange(n):
        for k in range(num_k):
            key = np.int64(coords[i, 0])
            for a in range(dims):
                x = np.int64(coords[i, a + 1])
                if transposed:
                    o = x * stride[a] - padding[a] + taps[k, a] * dilation[a]
                else:
                    numer = x + padding[a] - taps[k, a] * dilation[a]
                    if numer < 0 or numer % stride[a] != 0:
                        key = -1
                        break
                    o = numer // stride[a]
                if o < 0 or o >= out_shape[a]:
                    key = -1
                    break
                key = key * out_shape[a] + o
            keys[k, i] = key
    return keys
