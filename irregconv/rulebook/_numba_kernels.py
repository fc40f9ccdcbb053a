"""numba kernels for rulebook building on the CPU (imported lazily; torch fallbacks in the builders).

Every kernel writes disjoint memory per parallel iteration, so results never depend on scheduling.
"""
import numba
import numpy as np

from ..hashing._numba_kernels import _slot


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


@numba.njit(cache=True)
def new_sites(keys):
    """Deduplicate candidate output keys ``[K, N]`` (-1 = none) into sorted unique keys ``[N_out]`` and the
    neighbour map ``[K, N_out]`` (input row feeding each output through each offset, or -1).

    A serial open-addressing pass assigns first-seen ids (same bits every run), a sort of the unique keys
    fixes the output order, and the neighbour map is filled through the rank of each id.
    """
    num_k, n = keys.shape
    valid = 0
    for k in range(num_k):
        for i in range(n):
            if keys[k, i] >= 0:
                valid += 1
    capacity = 16
    while capacity < 2 * valid:
        capacity *= 2
    mask = capacity - 1
    slots_key = np.full(capacity, -1, dtype=np.int64)
    slots_id = np.empty(capacity, dtype=np.int64)
    ids = np.empty((num_k, n), dtype=np.int64)
    unique = np.empty(valid, dtype=np.int64)
    count = 0
    for k in range(num_k):
        for i in range(n):
            key = keys[k, i]
            if key < 0:
                ids[k, i] = -1
                continue
            s = _slot(key, mask)
            while slots_key[s] != -1 and slots_key[s] != key:
                s = (s + 1) & mask
            if slots_key[s] == -1:
                slots_key[s] = key
                slots_id[s] = count
                unique[count] = key
                count += 1
            ids[k, i] = slots_id[s]
    unique = unique[:count]
    order = np.argsort(unique)
    rank = np.empty(count, dtype=np.int64)
    for r in range(count):
        rank[order[r]] = r
    neighbors = np.full((num_k, count), -1, dtype=np.int64)
    for k in range(num_k):
        for i in range(n):
            if ids[k, i] >= 0:
                neighbors[k, rank[ids[k, i]]] = i
    return unique[order], neighbors
