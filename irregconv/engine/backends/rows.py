"""Deterministic row scatter-add: ``out[idx[p]] += src[p]`` for every pair ``p``, in pair order per row.

``idx`` may repeat (pairs of many kernel offsets land on one output row). On the CPU a kernel (native, or numba
where the extension was not built: :func:`irregconv._numba.cpu_kernels`) splits the *output rows* into one block
per thread; every thread scans all pairs and adds only those landing in its block, so each row is summed by one
thread in pair order: no atomics, and the same bits for any thread count (rows are never split, only reassigned).
Scanning the int64 indices once per thread costs little next to moving the rows. torch's ``index_add_`` is serial
on the CPU and was the largest single cost of a sparse conv layer before this kernel (~2-4x slower at C = 16..64 on a 41k-voxel
KITTI scan).

Elsewhere (CUDA, other dtypes, or neither kernel available) the caller's ``fallback_slices`` are added one by
one with ``index_add_``: each slice must be free of repeats (one kernel offset of a convolution), which
keeps even CUDA's atomic ``index_add_`` exact.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Optional, Tuple

import torch
from torch import Tensor

from ..._numba import cpu_kernels, kernels, native_kernels
from . import native

# CSR matmul is stable for what the fallback uses (CSR x dense); torch still labels the layout beta.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

#: the dtypes of the native and numba row kernels
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _kernels():
    """The numba kernel module, with numba's thread count matched to torch's (see irregconv/_numba.py)."""
    return kernels("irregconv.engine.backends._numba_kernels")


def _writable_cpu_rows(out: Tensor, src: Tensor) -> bool:
    """``out`` can be written in place by a CPU kernel reading ``src`` of its dtype."""
    return out.is_cpu and src.dtype == out.dtype and out.is_contiguous() and not out.requires_grad


def _kernel_path(out: Tensor, src: Tensor) -> str:
    """The row kernels that serve ``out`` and ``src``: ``"native"``, ``"numba"`` or ``"torch"`` (the fallbacks)."""
    if out.dtype in _KERNEL_DTYPES and _writable_cpu_rows(out, src):
        return cpu_kernels(out)
    return "torch"


def _arrays(kernel: str, *named: Tuple[str, Tensor]) -> list:
    """The named tensors as numpy arrays for a numba kernel (after :func:`native._refuse_tracing`: a traced tensor
    has no memory), each a plain CPU strided tensor (numpy shares its memory)."""
    native._refuse_tracing(kernel)
    arrays = []
    for name, x in named:
        x = x if type(x) is Tensor else native._plain(kernel, name, x)
        if not x.is_cpu or x.layout != torch.strided:
            raise ValueError(f"{kernel}: {name} must be a strided CPU tensor, got layout {x.layout} on {x.device}")
        arrays.append(x.detach().numpy())
    return arrays


def check_csr_rows_add(out: Tensor, crow: Tensor, col: Tensor, values: Tensor, src: Tensor) -> None:
    """The sizes the row sums read by (the native and numba kernels check every entry's range and column, torch's
    product its invariants): ``crow [N + 1]``, ``col [nnz]``, ``values [>= nnz]``, ``src [N_src, C]`` for
    ``out [N, C]``."""
    kernel = "csr_rows_add"
    if out.dim() != 2 or src.dim() != 2 or src.size(1) != out.size(1):
        raise ValueError(f"{kernel}: out [N, C] and src [N_src, C] must have the same channels, got "
                         f"{list(out.shape)} and {list(src.shape)}")
    if crow.shape != (out.size(0) + 1,):
        raise ValueError(f"{kernel}: crow must have {out.size(0) + 1} entries (one per output row and one), got "
                         f"{list(crow.shape)}")
    if col.dim() != 1 or values.dim() != 1 or values.numel() < col.numel():
        raise ValueError(f"{kernel}: col and values must be vectors with a value per entry, got {list(col.shape)} and "
                         f"{list(values.shape)}")


def csr_rows_add(out: Tensor, crow: Tensor, col: Tensor, values: Optional[Tensor], src: Tensor,
                 order: Optional[Tensor] = None, overwrite: bool = False, bias: Optional[Tensor] = None) -> Tensor:
    """In place ``out[o] += sum_{q in crow[o]:crow[o + 1]} values[order[q]] * src[col[q]]`` (``values[q]``
    without ``order``, ones without ``values``); ``overwrite`` replaces what ``out`` held (it may then be
    uninitialised) by the sums plus ``bias [C]`` (optional).

    One output row per parallel iteration, its terms summed in a fixed order, so the sums never depend on the
    thread count. On the CPU, float32 rows run the native vector kernel (interleaved partial sums: 2x the plain
    kernel at 16 channels) and float64 the plain native kernel (numba's where the extension was not built), which
    replaced torch's sparse CSR product
    (its per-call setup cost ~0.1 ms, more than the whole aggregation of Cora's 13k edges at 16 channels);
    elsewhere it is that product.
    """
    if bias is not None and not overwrite:
        raise ValueError("csr_rows_add: a bias is added when overwriting only")
    if values is None:
        values = torch.ones(col.numel(), dtype=src.dtype, device=src.device)
    elif values.dtype != src.dtype:
        values = values.to(src.dtype)
    if native.serves_rows(out) and _writable_cpu_rows(out, src):
        return native.csr_rows_add(out, crow, col, values, src, order, accumulate=not overwrite, bias=bias)
    crow, col = crow.long(), col.long()  # the engine may keep int32 columns for the native kernel
    if order is not None:
        values = values.index_select(0, order)
    check_csr_rows_add(out, crow, col, values, src)
    if overwrite and bias is not None:
        out.copy_(bias.expand_as(out))
    elif overwrite:
        out.zero_()
    path = _kernel_path(out, src)
    if path == "native":
        valid = native_kernels("rows").csr_rows_add(out, crow, col, values, src)
    elif path == "numba":
        valid = _kernels().csr_rows_add(*_arrays("csr_rows_add", ("out", out), ("crow", crow.contiguous()),
                                                 ("col", col.contiguous()), ("values", values.contiguous()),
                                                 ("src", src.contiguous())))
    if path != "torch":
        if not valid:
            raise ValueError(f"csr_rows_add: crow must rise within the {col.numel()} entries and every column must be "
                             f"in [0, {src.size(0)})")
        return out
    # invariants checked on the CPU, where a broken index would read outside src (one pass over the indices)
    adjacency = torch.sparse_csr_tensor(crow, col, values[:col.numel()], (out.size(0), src.size(0)),
                                        check_invariants=out.is_cpu)
    return out.add_(adjacency @ src)


def check_scatter_add_rows(out: Tensor, idx: Tensor, src: Tensor) -> None:
    """The arguments of the row scatter: ``idx [P]`` int64 and ``src [P, C]`` for ``out [N, C]`` (the kernel
    checks every row of ``idx``)."""
    if idx.dtype != torch.int64 or idx.dim() != 1:
        raise TypeError(f"scatter_add_rows: idx must be an int64 vector, got {idx.dtype} {list(idx.shape)}")
    if out.dim() != 2 or src.shape != (idx.numel(), out.size(1)):
        raise ValueError(f"scatter_add_rows: out [N, C] and src [P, C] need one src row per idx entry ({idx.numel()}) "
                         f"and the same channels, got {list(out.shape)} and {list(src.shape)}")


def scatter_add_rows(out: Tensor, idx: Tensor, src: Tensor, fallback_slices: Iterable[Tuple[int, int]]) -> Tensor:
    """In place ``out[idx[p], :] += src[p, :]``, rows summed in pair order.

    Args:
        out (Tensor): ``[N, C]``.
        idx (Tensor): ``[P]`` int64 rows of ``out`` (repeats allowed).
        src (Tensor): ``[P, C]``.
        fallback_slices: ``(start, end)`` ranges covering ``0..P`` in order, each without repeated
            indices; used off the native and numba paths.
    """
    path = _kernel_path(out, src)
    if path != "torch":
        check_scatter_add_rows(out, idx, src)
        if path == "native":
            outside = native_kernels("rows").scatter_add_owned(out, idx, src)
        else:
            module = _kernels()
            blocks = max(1, min(module.numba.get_num_threads(), out.size(0)))
            outside = module.scatter_add_owned(*_arrays("scatter_add_rows", ("out", out), ("idx", idx.contiguous()),
                                                        ("src", src.contiguous())), blocks)
        if outside:
            raise IndexError(f"scatter_add_rows: {outside} entries of idx are outside [0, {out.size(0)}) (their rows "
                             f"were left out)")
        return out
    for start, end in fallback_slices:
        out.index_add_(0, idx[start:end], src[start:end])
    return out
