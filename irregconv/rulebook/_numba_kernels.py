"""numba kernels for rulebook building on the CPU (imported lazily; torch fallbacks in the builders).

Every kernel writes disjoint memory per parallel iteration, so results never depend on scheduling.
"""
import numba
import numpy as np



@numba.njit(parallel=True, cache=True)
def compact_neighbors(neighbors):
    """``[K, N_out]`` neighbour map (-1 = none) -> ``in_idx [P]``, ``out_idx [P]``, ``counts [K]``,
    pairs grouped by offset and sorted by output.

    Branch-free: every entry is written at the offset's cursor, which advances only past valid ones (a
    data-dependent branch here mispredicted on most of the ~20% valid entries of a LiDAR scan's map).
    """
    num_k, num_out = neighbors.shape
    counts = np.zeros(num_k, dtype=np.int64)
    for k in numba.prange(num_k):
        c = 0
        for o in range(num_out):
            c += np.int64(neighbors[k, o] >= 0)
        counts[k] = c
    ptr = np.zeros(num_k + 1, dtype=np.int64)
    for k in range(num_k):
        ptr[k + 1] = ptr[k] + counts[k]
    in_idx = np.empty(ptr[num_k], dtype=np.int64)
    out_idx = np.empty(ptr[num_k], dtype=np.int64)
    for k in numba.prange(num_k):
        p = ptr[k]
        end = ptr[k + 1]
        for o in range(num_out):
            if p == end:  # the offset's pairs are all written; a write past them would hit offset k + 1's
                break
            i = neighbors[k, o]
            in_idx[p] = i
            out_idx[p] = o
            p += np.int64(i >= 0)
    return in_idx, out_idx, counts


@numba.njit(parallel=True, cache=True)
def merge_neighbors(sorted_keys, order, coords, displacements, radices, half, mirrored, neighbors):
    """Fill rows ``half[h]`` and ``mirrored[h]`` of the ``[K, N]`` neighbour map by a merge join.

    ``sorted_keys [N]`` are the sites' keys ascending and ``order`` their rows. For displacement ``d``,
    site ``i + d`` (inside the grid) has key ``key_i + delta(d)``: ascending with ``key_i``, so one forward
    pointer over ``sorted_keys`` finds all of them. Row ``half[h]`` gets ``neighbors[k, i] = j`` (output
    ``i`` reads input ``j``) and its mirror ``neighbors[m, j] = i``; rows are disjoint per ``h``.
    Every row of the map not in ``half`` or ``mirrored`` is left untouched.
    """
    n = sorted_keys.shape[0]
    dims = displacements.shape[1]
    for h in numba.prange(half.shape[0]):
        k = half[h]
        m = mirrored[h]
        delta = np.int64(0)
        for a in range(dims):
            delta = delta * radices[a + 1] + displacements[k, a]
        for i in range(n):
            neighbors[k, i] = -1
            neighbors[m, i] = -1
        r = 0
        j = 0
        while r < n and j < n:  # branch-free merge: both cursors advance by comparisons, never by branches
            i = order[r]
            inside = True
            for a in range(dims):
                c = np.int64(coords[i, a + 1]) + displacements[k, a]
                inside &= (c >= 0) & (c < radices[a + 1])
            query = sorted_keys[r] + delta
            key = sorted_keys[j]
            match = inside & (query == key)
            # the last visit of an (r, j) cursor pair writes the final value: a match moves both cursors
            neighbors[k, i] = order[j] if match else neighbors[k, i]
            neighbors[m, order[j]] = i if match else neighbors[m, order[j]]
            r += np.int64(query <= key)
            j += np.int64(key <= query)


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
def rank_sorted(sorted_keys):
    """``rank [V]`` of each of the ascending ``sorted_keys`` among the distinct ones, and those ``unique``."""
    v = sorted_keys.shape[0]
    rank = np.empty(v, dtype=np.int64)
    count = 0
    for q in range(v):
        if q > 0 and sorted_keys[q] != sorted_keys[q - 1]:
            count += 1
        rank[q] = count
    count = count + 1 if v > 0 else 0
    unique = np.empty(count, dtype=np.int64)
    for q in range(v):
        unique[rank[q]] = sorted_keys[q]
    return rank, unique


@numba.njit(parallel=True, cache=True)
def fill_new_neighbors(rank, order, pair_offset, pair_input, neighbors):
    """``neighbors [K, N_out]``: the input row feeding each output site through each offset, or -1.

    Candidate ``order[q]`` (offset ``pair_offset``, input ``pair_input``) reaches output ``rank[q]``; an
    (offset, output) has at most one candidate, so the parallel fill writes disjoint entries.
    """
    num_k, num_out = neighbors.shape
    for k in numba.prange(num_k):
        for o in range(num_out):
            neighbors[k, o] = -1
    for q in numba.prange(rank.shape[0]):
        c = order[q]
        neighbors[pair_offset[c], rank[q]] = pair_input[c]


@numba.njit(cache=True)
def _counting_pass(keys, size, src, dst):
    """Stable counting sort of the permutation ``src`` by ``keys[src]`` (values in ``[0, size)``) into ``dst``."""
    starts = np.zeros(size + 1, dtype=np.int64)
    for p in range(src.shape[0]):
        starts[keys[src[p]] + 1] += 1
    for v in range(size):
        starts[v + 1] += starts[v]
    for p in range(src.shape[0]):
        v = keys[src[p]]
        dst[starts[v]] = src[p]
        starts[v] += 1


@numba.njit(cache=True)
def sort_pairs(offset, out_idx, in_idx, num_k, num_out, num_in):
    """Permutation sorting pairs by (offset, out, in), ties kept in input order: an LSD radix sort of three
    stable counting passes, O(P + K + N_out + N_in) (torch's comparison sort took 0.5 ms for Cora's 13k edges)."""
    order = np.arange(in_idx.shape[0])
    scratch = np.empty_like(order)
    _counting_pass(in_idx, num_in, order, scratch)
    _counting_pass(out_idx, num_out, scratch, order)
    if num_k > 1:
        _counting_pass(offset, num_k, order, scratch)
        return scratch
    return order
