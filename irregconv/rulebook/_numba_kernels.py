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


@numba.njit(cache=True, inline="always")
def _valid_axis_outputs(coords, i, axis_taps, axis_counts, stride, padding, dilation, out_shape, transposed,
                        valid_count, valid_tap, valid_out):
    """For input ``i`` and each axis ``a``: the ``valid_count[a]`` distinct tap values (indices into
    ``axis_taps[a]``, in ``valid_tap[a]``) that reach an output coordinate (``valid_out[a]``). Returns
    False when some axis has none."""
    for a in range(axis_taps.shape[0]):
        x = np.int64(coords[i, a + 1])
        c = 0
        for u in range(axis_counts[a]):
            tap = axis_taps[a, u] * dilation[a]
            if transposed:
                o = x * stride[a] - padding[a] + tap
            else:
                numer = x + padding[a] - tap
                o = numer // stride[a] if numer >= 0 and numer % stride[a] == 0 else -1
            if 0 <= o < out_shape[a]:
                valid_tap[a, c] = u
                valid_out[a, c] = o
                c += 1
        if c == 0:
            return False
        valid_count[a] = c
    return True


@numba.njit(cache=True, inline="always")
def _next_combination(position, valid_count):
    """Advance the odometer ``position`` over the valid values of every axis; False after the last."""
    for a in range(position.shape[0] - 1, -1, -1):
        position[a] += 1
        if position[a] < valid_count[a]:
            return True
        position[a] = 0
    return False


@numba.njit(parallel=True, cache=True)
def candidate_pairs(coords, tap_of, axis_taps, axis_counts, stride, padding, dilation, out_shape, transposed,
                    num_k, blocks):
    """Every (tap, input) that reaches an output site: ``keys [V]`` (over ``(batch, *out_shape)``),
    ``inputs [V]`` and ``counts [K]``, grouped by tap, inputs ascending within a tap.

    Strided: ``o = (x + padding - tap * dilation) / stride`` when divisible; transposed:
    ``o = x * stride - padding + tap * dilation``; valid when inside ``out_shape``. Each axis is solved
    once per distinct tap value, and only combinations of valid values are visited (``tap_of`` maps a
    combination, flattened over ``axis_counts``, to its tap or -1): about 3.4 of the 27 taps of a
    stride-2 3x3x3 cube per input. Two passes over the inputs in ``blocks`` ranges: count, then fill at
    per-(tap, block) cursors.
    """
    n = coords.shape[0]
    dims, width = axis_taps.shape
    # per-block rows [blocks, K], copied into block-local arrays while a block runs: counters that two
    # threads update in one cache line cost half the speed
    block_counts = np.zeros((blocks, num_k), dtype=np.int64)
    cursor = np.empty((blocks, num_k), dtype=np.int64)
    counts = np.zeros(num_k, dtype=np.int64)
    keys = np.empty(0, dtype=np.int64)
    inputs = np.empty(0, dtype=np.int64)
    for fill in range(2):
        if fill:
            total = 0
            for k in range(num_k):
                for b in range(blocks):
                    cursor[b, k] = total
                    total += block_counts[b, k]
                    counts[k] += block_counts[b, k]
            keys = np.empty(total, dtype=np.int64)
            inputs = np.empty(total, dtype=np.int64)
        for b in numba.prange(blocks):
            valid_count = np.empty(dims, dtype=np.int64)
            valid_tap = np.empty((dims, width), dtype=np.int64)
            valid_out = np.empty((dims, width), dtype=np.int64)
            position = np.zeros(dims, dtype=np.int64)
            local = cursor[b].copy() if fill else np.zeros(num_k, dtype=np.int64)
            for i in range(n * b // blocks, n * (b + 1) // blocks):
                if not _valid_axis_outputs(coords, i, axis_taps, axis_counts, stride, padding, dilation, out_shape,
                                           transposed, valid_count, valid_tap, valid_out):
                    continue
                more = True
                while more:
                    flat = 0
                    for a in range(dims):
                        flat = flat * axis_counts[a] + valid_tap[a, position[a]]
                    k = tap_of[flat]
                    if k >= 0:
                        if fill:
                            key = np.int64(coords[i, 0])
                            for a in range(dims):
                                key = key * out_shape[a] + valid_out[a, position[a]]
                            keys[local[k]] = key
                            inputs[local[k]] = i
                        local[k] += 1
                    more = _next_combination(position, valid_count)
            if not fill:
                block_counts[b] = local
    return keys, inputs, counts


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
def candidate_outputs(rank, order, counts):
    """The output row each candidate reaches, in candidate order (``rank[q]`` belongs to candidate ``order[q]``),
    and whether those rows ascend within every tap's run of ``counts`` candidates (they do when the input
    sites are sorted: a tap maps sites monotonically)."""
    outputs = np.empty(rank.shape[0], dtype=np.int64)
    for q in numba.prange(rank.shape[0]):
        outputs[order[q]] = rank[q]
    num_k = counts.shape[0]
    starts = np.zeros(num_k + 1, dtype=np.int64)
    for k in range(num_k):
        starts[k + 1] = starts[k] + counts[k]
    ascending = np.ones(num_k, dtype=np.bool_)
    for k in numba.prange(num_k):
        for p in range(starts[k] + 1, starts[k + 1]):
            if outputs[p] <= outputs[p - 1]:
                ascending[k] = False
                break
    return outputs, ascending.all()


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
    """Stable counting sort of the permutation ``src`` by ``keys[src]`` into ``dst``; False (``dst`` untouched) if a
    key lies outside ``[0, size)``."""
    starts = np.zeros(size + 1, dtype=np.int64)
    for p in range(src.shape[0]):
        v = keys[src[p]]
        if v < 0 or v >= size:
            return False
        starts[v + 1] += 1
    for v in range(size):
        starts[v + 1] += starts[v]
    for p in range(src.shape[0]):
        v = keys[src[p]]
        dst[starts[v]] = src[p]
        starts[v] += 1
    return True


@numba.njit(cache=True)
def argsort_keys(keys, key_bound):
    """Stable ascending sort of non-negative ``keys < key_bound``: ``(sorted_keys, order)``. An LSD radix
    sort of 12-bit digits moving keys and positions together, two passes for keys below 2^24 (1.1 ms for
    the 142k candidates of a stride-2 layer on a 41k-voxel KITTI scan; torch's stable sort took 2.0 ms).
    Not :func:`_counting_pass` per digit: reading the keys back through the permutation took 2.1 ms."""
    n = keys.shape[0]
    order, order_next = np.arange(n), np.empty(n, dtype=np.int64)
    current, current_next = keys.copy(), np.empty(n, dtype=np.int64)
    shift = 0
    while shift == 0 or (key_bound - 1) >> shift > 0:
        starts = np.zeros(4097, dtype=np.int64)
        for p in range(n):
            starts[((current[p] >> shift) & 4095) + 1] += 1
        for v in range(4096):
            starts[v + 1] += starts[v]
        for p in range(n):
            digit = (current[p] >> shift) & 4095
            q = starts[digit]
            current_next[q] = current[p]
            order_next[q] = order[p]
            starts[digit] = q + 1
        current, current_next = current_next, current
        order, order_next = order_next, order
        shift += 12
    return current, order


@numba.njit(cache=True)
def sort_pairs(offset, out_idx, in_idx, num_k, num_out, num_in):
    """Permutation sorting pairs by (offset, out, in), ties kept in input order: an LSD radix sort of three
    stable counting passes, O(P + K + N_out + N_in) (torch's comparison sort took 0.5 ms for Cora's 13k edges).
    Returns ``(order, valid)``: ``valid`` False if an index lies outside ``[0, num_in)``, ``[0, num_out)`` or
    ``[0, num_k)``."""
    order = np.arange(in_idx.shape[0])
    scratch = np.empty_like(order)
    if not (_counting_pass(in_idx, num_in, order, scratch) and _counting_pass(out_idx, num_out, scratch, order)):
        return order, False
    if num_k > 1:
        return scratch, _counting_pass(offset, num_k, order, scratch)
    return order, True
