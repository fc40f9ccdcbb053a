"""numba kernels for the engine's row operations on the CPU (imported lazily through
:func:`irregconv._numba.kernels`). Each parallel iteration owns its output rows, so results never depend
on scheduling or on the thread count."""
import numba


@numba.njit(parallel=True, cache=True)
def scatter_add_owned(out, idx, src, blocks):
    """``out[idx[p]] += src[p]``: the rows of ``out`` split into ``blocks`` ranges, one per iteration, each
    scanning every pair and adding those that land in its range, in pair order."""
    num_rows, channels = out.shape
    for b in numba.prange(blocks):
        lo = num_rows * b // blocks
        hi = num_rows * (b + 1) // blocks
        for p in range(idx.shape[0]):
            o = idx[p]
            if lo <= o < hi:
                for c in range(channels):
                    out[o, c] += src[p, c]


@numba.njit(parallel=True, cache=True)
def csr_rows_add(out, crow, col, values, src):
    """``out[o] += sum_q values[q] * src[col[q]]`` over ``q in crow[o]:crow[o + 1]``, one row per iteration."""
    channels = out.shape[1]
    for o in numba.prange(out.shape[0]):
        for q in range(crow[o], crow[o + 1]):
            i = col[q]
            v = values[q]
            for c in range(channels):
                out[o, c] += v * src[i, c]
