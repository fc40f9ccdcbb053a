"""numba kernels for the engine's row operations on the CPU (imported lazily through
:func:`irregconv._numba.kernels`). Each parallel iteration owns its output rows, so results never depend
on scheduling or on the thread count. They read and write only inside their arrays: every index read from data is
checked here, the arrays' shapes and dtypes by :mod:`~irregconv.engine.backends.rows`."""
import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def scatter_add_owned(out, idx, src, blocks):
    """``out[idx[p]] += src[p]``: the rows of ``out`` split into ``blocks`` ranges, one per iteration, each
    scanning every pair and adding those that land in its range, in pair order. Returns the number of pairs
    whose row lies outside ``out`` (left out: no block owns it)."""
    num_rows, channels = out.shape
    outside = np.zeros(blocks, dtype=np.int64)
    for b in numba.prange(blocks):
        lo = num_rows * b // blocks
        hi = num_rows * (b + 1) // blocks
        for p in range(idx.shape[0]):
            o = idx[p]
            if lo <= o < hi:
                for c in range(channels):
                    out[o, c] += src[p, c]
            elif o < 0 or o >= num_rows:
                outside[b] += 1
    return outside[0]


@numba.njit(parallel=True, cache=True)
def csr_rows_add(out, crow, col, values, src):
    """``out[o] += sum_q values[q] * src[col[q]]`` over ``q in crow[o]:crow[o + 1]``, one row per iteration.
    Returns False (rows partly summed) if a row's entries leave ``[0, len(col))`` or a column leaves ``src``."""
    channels = out.shape[1]
    num_entries = col.shape[0]
    num_src = src.shape[0]
    valid = np.ones(out.shape[0], dtype=np.bool_)
    for o in numba.prange(out.shape[0]):
        begin = crow[o]
        end = crow[o + 1]
        if begin < 0 or end > num_entries:
            valid[o] = False
            continue
        for q in range(begin, end):
            i = col[q]
            if i < 0 or i >= num_src:
                valid[o] = False
                break
            v = values[q]
            for c in range(channels):
                out[o, c] += v * src[i, c]
    return valid.all()
