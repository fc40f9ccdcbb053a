"""The native row kernels of :mod:`irregconv.engine.backends.rows` for float32 and float64 (``row_kernels.cpp``):
the numba kernels of :mod:`irregconv.engine.backends._numba_kernels` compiled ahead of time, the same bits for any
thread count. Each wrapper checks every buffer (plain strided CPU tensors of the rows' dtype and consistent sizes)
and the kernel every index it reads."""
from __future__ import annotations

import torch
from torch import Tensor

from . import _LIBRARY, ANY_STRIDES, ROWS, _buffer, _refuse_tracing, _sizes
from .rulebook import _vector

#: the dtypes of the plain row kernels
DTYPES = (torch.float32, torch.float64)


def _rows(kernel: str, name: str, x, dtype: torch.dtype, rows=None, strides: str = ANY_STRIDES) -> Tensor:
    return _buffer(kernel, name, x, dtype, (_sizes(kernel, name, x, ("N", "C"))[1],), rows, strides)


def _float_out(kernel: str, out) -> Tensor:
    """``out [N, C]``, float32 or float64 and contiguous (the rows a row kernel writes), checked, as a plain tensor."""
    _refuse_tracing(kernel)
    if not isinstance(out, Tensor) or out.dtype not in DTYPES:
        raise TypeError(f"{kernel}: out must be a float32 or float64 tensor, got "
                        f"{out.dtype if isinstance(out, Tensor) else type(out).__name__}")
    return _rows(kernel, "out", out, out.dtype, strides=ROWS)


def check_scatter_add_owned(out: Tensor, idx: Tensor, src: Tensor):
    """``out [N, C]`` (float32 or float64, contiguous), ``idx [P]`` int64 and ``src [P, C]`` of ``out``'s dtype,
    checked, as plain contiguous tensors."""
    kernel = "scatter_add_owned"
    out = _float_out(kernel, out)
    idx = _vector(kernel, "idx", idx)
    src = _rows(kernel, "src", src, out.dtype, idx.numel())
    if src.size(1) != out.size(1):
        raise ValueError(f"{kernel}: src must have out's {out.size(1)} channels, got {src.size(1)}")
    return out, idx, src.contiguous()


def scatter_add_owned(out: Tensor, idx: Tensor, src: Tensor) -> int:
    """In place ``out[idx[p]] += src[p]``, each row summed in pair order by the thread owning it; returns the number
    of pairs whose row lies outside ``out`` (left out)."""
    out, idx, src = check_scatter_add_owned(out, idx, src)
    return _LIBRARY.scatter_add_owned(out.data_ptr(), out.size(0), out.size(1), idx.data_ptr(), idx.numel(),
                                      src.data_ptr(), int(out.dtype == torch.float64), torch.get_num_threads())


def csr_rows_add(out: Tensor, crow: Tensor, col: Tensor, values: Tensor, src: Tensor) -> bool:
    """In place ``out[o] += sum_q values[q] * src[col[q]]`` over ``q in crow[o]:crow[o + 1]`` (float32 or float64
    rows, int64 indices), one row per iteration, terms in order; False (rows partly summed) if a row's entries
    leave ``col`` or ``values`` or a column leaves ``src``."""
    kernel = "csr_rows_add"
    out = _float_out(kernel, out)
    crow = _vector(kernel, "crow", crow, out.size(0) + 1, "one per output row and one")
    col = _vector(kernel, "col", col)
    values = _buffer(kernel, "values", values, out.dtype, (), strides=ANY_STRIDES).contiguous()
    src = _rows(kernel, "src", src, out.dtype).contiguous()
    if src.size(1) != out.size(1):
        raise ValueError(f"{kernel}: src must have out's {out.size(1)} channels, got {src.size(1)}")
    status = _LIBRARY.csr_rows_add_plain(out.data_ptr(), out.size(0), out.size(1), crow.data_ptr(), col.data_ptr(),
                                         col.numel(), values.data_ptr(), values.numel(), src.data_ptr(), src.size(0),
                                         int(out.dtype == torch.float64), torch.get_num_threads())
    return status == 0
