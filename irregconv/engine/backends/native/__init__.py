"""The engine's native CPU kernels (``gather_gemm_scatter.cpp``, called through the CPython bindings of
``python_module.cpp``): the fused gather-GEMM-scatter of a convolution and its weight gradient, CSR row sums for
graphs (optionally with a bias, or multiplied by a small layer's weight in the same pass), products through the
nonzeros of mostly-zero dense rows, batch-norm column statistics, weight transposes. The submodules
:mod:`.rulebook`, :mod:`.hashing` and :mod:`.rows` wrap the same extension's rulebook-building, hash-table and plain
row kernels (``rulebook_kernels.cpp``, ``hash_kernels.cpp``, ``row_kernels.cpp``: the numba kernels compiled ahead of
time, the same bits), which :func:`irregconv._numba.cpu_kernels` selects, so no kernel is compiled at run time.

``setup.py`` compiles them at install time (one extension module, no torch headers, seconds with any ``g++``);
where it is missing (no compiler at install, another platform) :data:`AVAILABLE` is False and the engine keeps
its numba/torch paths (same results to rounding, slower). ``IRREGCONV_NATIVE=0`` turns the kernels off for a
process, :func:`disabled` for a block of code.

The kernels take addresses and sizes (``tensor.data_ptr()``, None for an optional buffer) and trust them, so every
function here that calls one first runs its ``check_*`` function, which reads and refuses (with the kernel, the
argument, what it got and what would work) every buffer the kernel reads or writes, outputs included: a plain
``torch.Tensor`` (a subclass only where it converts to one with storage), its dtype, the CPU, the strided layout,
the strides the kernel assumes and sizes consistent with the other arguments; the kernels check every index they
read against those sizes and return a status. Each check is a few attribute comparisons per buffer, no pass over
the data. Under ``torch.compile`` the checks raise before any address is taken: dynamo breaks the graph there and
runs the call eagerly; ``torch.export`` reports it.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor

from ....rulebook.rulebook import pointer_from_counts

_VERSION = 21


def _share_torch_openmp(library: ModuleType) -> None:
    """Give the kernels torch's OpenMP runtime (the libgomp torch loaded, found in the process's maps), so
    their threads are torch's pool; otherwise they start std::threads of their own."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "gomp" in line and "/torch/" in line}
    except OSError:
        return
    for path in sorted(paths):
        try:
            gomp = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
            entry_points = [ctypes.cast(getattr(gomp, name), ctypes.c_void_p).value
                            for name in ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads")]
        except (OSError, AttributeError):
            continue
        library.use_openmp(*entry_points)
        return


def _load() -> Optional[ModuleType]:
    if os.environ.get("IRREGCONV_NATIVE", "1") == "0":
        return None
    try:
        library = importlib.import_module(__name__ + "._gather_gemm_scatter")
        stale = library.version() != _VERSION
    except ImportError:
        built = sorted(Path(__file__).parent.glob("_gather_gemm_scatter*"))
        if not built:  # not compiled at install: the numba/torch paths serve
            return None
        library, stale = built[0], True
    if stale:
        name = getattr(library, "__file__", library)
        warnings.warn(f"irregconv: {Path(name).name} was built from other sources than this irregconv; running "
                      f"without the native kernels (slower). Rebuild it: pip install -e . (or make install)")
        return None
    _share_torch_openmp(library)
    return library


_LIBRARY = _load()
#: whether the native kernel is loaded
AVAILABLE = _LIBRARY is not None
_enabled = True


@contextlib.contextmanager
def disabled():
    """Run the engine's three-pass path instead of the native kernels inside this block (for comparisons); the
    rulebook, hash-table and row kernels take numba's (or torch's) path there too."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def cpu_float32(x: Tensor, other: Optional[Tensor] = None) -> bool:
    """The kernels are loaded and enabled, and ``x`` (and ``other``) are float32 on the CPU (one expression: this
    runs several times per layer call)."""
    return (AVAILABLE and _enabled and x.dtype == torch.float32 and x.is_cpu
            and (other is None or (other.dtype == torch.float32 and other.is_cpu)))


def serves(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], c_out: int) -> bool:
    """Whether the convolution kernels handle this call: CPU float32, an ungrouped weight ``[K, C_in, C_out]``
    with ``C_out`` a multiple of 16 (``c_out``: the channels of the rows the call writes), no per-pair scale."""
    return (weight is not None and pair_scale is None and weight.dim() == 3 and c_out % 16 == 0
            and cpu_float32(feats, weight))


def serves_rows(x: Tensor) -> bool:
    """Whether the row kernels (column statistics, CSR row sums) handle rows ``x``: a float32 ``[N, C]`` CPU
    tensor."""
    return x.dim() == 2 and cpu_float32(x)


#: what a buffer's strides may be: any (the wrapper copies it into rows first), rows (contiguous), or rows or a
#: transposed view of a row-major matrix (:func:`is_transposed`, read or written in place)
ANY_STRIDES, ROWS = "any strides", "contiguous"
ROWS_OR_COLUMNS = "contiguous or a transposed view of a row-major matrix"


def _refuse_tracing(kernel: str) -> None:
    """Raise under ``torch.compile`` / ``torch.export`` tracing, before any address is taken: its tensors have no
    memory (dynamo then breaks the graph and runs the call eagerly)."""
    if torch.compiler.is_compiling():
        raise RuntimeError(f"{kernel}: the native kernel reads raw memory, which a traced graph cannot hold; "
                           f"torch.compile runs it eagerly (a graph break), torch.export cannot capture it")


def _plain(kernel: str, name: str, x) -> Tensor:
    """``x`` as a plain ``torch.Tensor`` sharing its storage, or a TypeError (not a tensor, or a subclass without
    storage of its own: a torch_geometric ``Index`` of an ``EdgeIndex``, a FakeTensor)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{kernel}: {name} must be a torch.Tensor, got {type(x).__name__}")
    plain = x.as_subclass(Tensor)
    if type(plain) is not Tensor:
        raise TypeError(f"{kernel}: {name} is a {type(x).__name__}, a tensor subclass that does not convert to a plain "
                        f"torch.Tensor with storage; pass a plain tensor (for a torch_geometric EdgeIndex or Index: "
                        f".as_tensor())")
    return plain


def _buffer(kernel: str, name: str, x, dtype: torch.dtype, sizes: Tuple[int, ...], rows: Optional[int] = None,
            strides: str = ROWS, meaning: str = "") -> Tensor:
    """``x`` as a plain tensor after checking that kernel ``kernel`` may read or write it as argument ``name``: a
    strided CPU tensor of ``dtype`` and shape ``[rows, *sizes]`` (``rows`` None: any number), with ``strides``,
    and memory behind it when it is not empty. A few attribute reads, no pass over the data."""
    if type(x) is not Tensor:
        x = _plain(kernel, name, x)
    if not (x.dtype == dtype and x.is_cpu and x.layout == torch.strided and x.shape[1:] == sizes
            and x.dim() == len(sizes) + 1 and (rows is None or x.shape[0] == rows)
            and (strides == ANY_STRIDES or x.is_contiguous() or (strides == ROWS_OR_COLUMNS and is_transposed(x)))):
        raise _refusal(kernel, name, x, dtype, sizes, rows, strides, meaning)
    if not x.data_ptr() and x.numel():
        raise ValueError(f"{kernel}: {name} has {x.numel()} elements but no memory (its storage was freed or "
                         f"resized); pass a tensor with its data")
    return x


def _refusal(kernel: str, name: str, x: Tensor, dtype: torch.dtype, sizes: Tuple[int, ...], rows: Optional[int],
             strides: str, meaning: str) -> Exception:
    """The error for the first property of ``x`` that :func:`_buffer` refuses."""
    if x.dtype != dtype:
        return TypeError(f"{kernel}: {name} must be {dtype}, got {x.dtype}; cast it (the engine computes bfloat16 and "
                         f"float16 in float32 and casts back)")
    if not x.is_cpu or x.layout != torch.strided:
        return ValueError(f"{kernel}: {name} must be a strided (dense) CPU tensor, got layout {x.layout} on "
                          f"{x.device}; move it with .cpu() / .to_dense()")
    expected = ["N" if rows is None else rows, *sizes]
    if x.dim() != len(expected) or (rows is not None and x.shape[0] != rows) or x.shape[1:] != sizes:
        what = f"{expected[0]} entries{f' ({meaning})' if meaning else ''}" if not sizes else f"shape {expected}"
        got = x.numel() if not sizes and x.dim() == 1 else list(x.shape)
        return ValueError(f"{kernel}: {name} must have {what}, got {got}")
    return ValueError(f"{kernel}: {name} must be {strides}, got strides {x.stride()} for shape {list(x.shape)}; "
                      f"copy it with .contiguous()")


def _sizes(kernel: str, name: str, x, symbols: Tuple[str, ...]) -> Tuple[int, ...]:
    """The sizes of ``x`` after checking that it is a tensor with one dimension per symbol."""
    if not isinstance(x, Tensor) or x.dim() != len(symbols):
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{kernel}: {name} must be a [{', '.join(symbols)}] tensor, got {got}")
    return tuple(x.shape)


def _channels_of_16(kernel: str, name: str, channels: int) -> None:
    if channels % 16:
        raise ValueError(f"{kernel}: {name} must have a multiple of 16 channels (the kernel stores 16 at a time), "
                         f"got {channels}")


def _pairs(kernel: str, in_idx: Tensor, out_idx: Tensor, offset_ptr: Tensor, num_k: int):
    """The pair arrays (int64 CPU), contiguous, after checking ``offset_ptr`` (the kernels check every row index)."""
    in_idx = _buffer(kernel, "in_idx", in_idx, torch.int64, (), strides=ANY_STRIDES)
    out_idx = _buffer(kernel, "out_idx", out_idx, torch.int64, (), in_idx.numel(), ANY_STRIDES, "one per pair")
    offset_ptr = _buffer(kernel, "offset_ptr", offset_ptr, torch.int64, (), strides=ANY_STRIDES)
    ptr = offset_ptr.tolist()
    if (len(ptr) != num_k + 1 or ptr[0] != 0 or ptr[-1] != in_idx.numel()
            or any(b < a for a, b in zip(ptr, ptr[1:]))):
        raise ValueError(f"{kernel}: offset_ptr must rise from 0 to the {in_idx.numel()} pairs over K + 1 = "
                         f"{num_k + 1} entries, got {ptr}")
    return in_idx.contiguous(), out_idx.contiguous(), offset_ptr.contiguous()


def _check_status(status: int, owner: str, num_in: int, num_out: int, ordered: bool) -> None:
    if status != 0:
        order = " and ascending within each offset" if ordered else ""
        raise ValueError(f"{owner}: the rulebook's pairs break its invariants (input rows in [0, {num_in}), output "
                         f"rows in [0, {num_out}){order}); build rulebooks with irregconv.rulebook's builders")


def check_conv_accumulate(out: Tensor, feats: Tensor, weight: Tensor, in_idx: Tensor, out_idx: Tensor,
                          offset_ptr: Tensor):
    """The arguments of :func:`conv_accumulate` checked, as plain contiguous tensors ``(out, feats, weight, in_idx,
    out_idx, offset_ptr)``; raises TypeError / ValueError naming the one it refuses."""
    kernel = "conv_accumulate"
    _refuse_tracing(kernel)
    num_k, c_in, c_out = _sizes(kernel, "weight", weight, ("K", "C_in", "C_out"))
    weight = _buffer(kernel, "weight", weight, torch.float32, (c_in, c_out), strides=ANY_STRIDES)
    _channels_of_16(kernel, "weight", c_out)
    feats = _buffer(kernel, "feats", feats, torch.float32, (c_in,), strides=ANY_STRIDES)
    out = _buffer(kernel, "out", out, torch.float32, (c_out,))
    return (out, feats.contiguous(), weight.contiguous(), *_pairs(kernel, in_idx, out_idx, offset_ptr, num_k))


def conv_accumulate(out: Tensor, feats: Tensor, weight: Tensor, in_idx: Tensor, out_idx: Tensor,
                    offset_ptr: Tensor, skip: Optional[int]) -> Tensor:
    """In place ``out[o] += feats[i] @ weight[k]`` over the pairs ``(i, o)`` of every offset ``k != skip``.

    Args:
        out (Tensor): ``[N_out, C_out]`` float32, contiguous.
        feats (Tensor): ``[N_in, C_in]`` float32.
        weight (Tensor): ``[K, C_in, C_out]`` float32, ``C_out % 16 == 0``.
        in_idx, out_idx (Tensor): ``[P]`` int64, grouped by offset (``offset_ptr [K + 1]``), sorted by
            output within an offset, one pair per (offset, output) at most.
        skip (int, optional): an offset left out (the identity, already applied).

    Raises:
        TypeError, ValueError: for an argument :func:`check_conv_accumulate` refuses, or pairs that break those
            invariants (``out`` is then partly summed).
    """
    out, feats, weight, in_idx, out_idx, offset_ptr = check_conv_accumulate(out, feats, weight, in_idx, out_idx,
                                                                            offset_ptr)
    status = _LIBRARY.conv_accumulate(feats.data_ptr(), feats.size(1), feats.size(0), weight.data_ptr(),
                                      weight.size(2), in_idx.data_ptr(), out_idx.data_ptr(), offset_ptr.data_ptr(),
                                      weight.size(0), -1 if skip is None else int(skip), out.data_ptr(), out.size(0),
                                      torch.get_num_threads())
    _check_status(status, "conv_accumulate", feats.size(0), out.size(0), ordered=True)
    return out


def check_conv_weight_grad(grad_weight: Tensor, feats: Tensor, grad_out: Tensor, in_idx: Tensor, out_idx: Tensor,
                           offset_ptr: Tensor):
    """The arguments of :func:`conv_weight_grad` checked, as plain contiguous tensors ``(grad_weight, feats,
    grad_out, in_idx, out_idx, offset_ptr)``."""
    kernel = "conv_weight_grad"
    _refuse_tracing(kernel)
    num_k, c_in, c_out = _sizes(kernel, "grad_weight", grad_weight, ("K", "C_in", "C_out"))
    grad_weight = _buffer(kernel, "grad_weight", grad_weight, torch.float32, (c_in, c_out))
    _channels_of_16(kernel, "grad_weight", c_out)
    feats = _buffer(kernel, "feats", feats, torch.float32, (c_in,), strides=ANY_STRIDES)
    grad_out = _buffer(kernel, "grad_out", grad_out, torch.float32, (c_out,), strides=ANY_STRIDES)
    return (grad_weight, feats.contiguous(), grad_out.contiguous(),
            *_pairs(kernel, in_idx, out_idx, offset_ptr, num_k))


def conv_weight_grad(grad_weight: Tensor, feats: Tensor, grad_out: Tensor, in_idx: Tensor, out_idx: Tensor,
                     offset_ptr: Tensor, skip: Optional[int]) -> Tensor:
    """In place ``grad_weight[k] = sum feats[i]^T grad_out[o]`` over the pairs ``(i, o)`` of each offset
    ``k != skip`` (``grad_weight[skip]`` is left as it is). Summed in fixed blocks of pairs: the same bits
    for any thread count.

    Args:
        grad_weight (Tensor): ``[K, C_in, C_out]`` float32, contiguous.
        feats (Tensor): ``[N_in, C_in]`` float32.
        grad_out (Tensor): ``[N_out, C_out]`` float32, ``C_out % 16 == 0``.
        in_idx, out_idx, offset_ptr: the rulebook's pairs, as for :func:`conv_accumulate`.
    """
    grad_weight, feats, grad_out, in_idx, out_idx, offset_ptr = check_conv_weight_grad(
        grad_weight, feats, grad_out, in_idx, out_idx, offset_ptr)
    status = _LIBRARY.conv_weight_grad(feats.data_ptr(), feats.size(1), feats.size(0), grad_out.data_ptr(),
                                       grad_out.size(1), grad_out.size(0), in_idx.data_ptr(), out_idx.data_ptr(),
                                       offset_ptr.data_ptr(), grad_weight.size(0), -1 if skip is None else int(skip),
                                       grad_weight.data_ptr(), torch.get_num_threads())
    _check_status(status, "conv_weight_grad", feats.size(0), grad_out.size(0), ordered=False)
    return grad_weight


#: rows sampled to decide whether a dense matrix is sparse enough for the nonzero-row kernels
SAMPLE_ROWS = 64
#: largest share of nonzeros (in the sampled rows) at which they beat a GEMM
MAX_DENSITY = 1 / 16
#: largest matrix (entries) for the nonzero-row kernel: its CSR buffers reserve 8 bytes per entry of address
#: space (only the nonzeros are touched), which stays below 1 GiB
MAX_ENTRIES = 1 << 27


def mostly_zero(x: Tensor, weight: Tensor) -> bool:
    """Whether ``x @ weight`` should run through the nonzeros of ``x`` (:func:`nonzero_rows_matmul`): CPU float32
    ``x [N, C_in]`` of 64k to 128M entries, ``C_out`` a multiple of 16, and at most 1/16 of the entries of
    64 evenly spaced rows nonzero (bag-of-words features: 1.3% on Cora). The sample decides, so the same
    ``x`` always takes the same path."""
    if not (x.dim() == 2 and weight.dim() == 2 and weight.size(1) % 16 == 0 and 1 << 16 <= x.numel() <= MAX_ENTRIES
            and cpu_float32(x, weight)):
        return False
    sample = x[::max(1, x.size(0) // SAMPLE_ROWS)][:SAMPLE_ROWS]
    return int(torch.count_nonzero(sample)) <= MAX_DENSITY * sample.numel()


def check_nonzero_rows_matmul(x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
    """The arguments of :func:`nonzero_rows_matmul` checked, as plain contiguous tensors ``(x, weight)``."""
    kernel = "nonzero_rows_matmul"
    _refuse_tracing(kernel)
    c_in, c_out = _sizes(kernel, "weight", weight, ("C_in", "C_out"))
    _channels_of_16(kernel, "weight", c_out)
    weight = _buffer(kernel, "weight", weight, torch.float32, (c_out,), c_in, ANY_STRIDES)
    x = _buffer(kernel, "x", x, torch.float32, (c_in,), strides=ANY_STRIDES)
    return x.contiguous(), contiguous_rows(weight)


def nonzero_rows_matmul(x: Tensor, weight: Tensor) -> Tuple[Tensor, Tuple[Tensor, Tensor, Tensor]]:
    """``x [N, C_in] @ weight [C_in, C_out]`` through the nonzeros of ``x`` in one scan (no GEMM), each row
    summed in column order; float32 on the CPU, ``C_out`` a multiple of 16.

    Returns:
        ``(out [N, C_out], (crow [N + 1], cols [nnz] int32, vals [nnz]))``: the product and ``x`` as CSR,
        found on the way, for :func:`csr_weight_grad` in the backward.
    """
    x, weight = check_nonzero_rows_matmul(x, weight)
    n, c_in = x.shape
    out = x.new_empty(n, weight.size(1))
    # each thread appends its rows' nonzeros from (its first row) * C_in on: untouched capacity costs no memory
    cols, vals = torch.empty(n * c_in, dtype=torch.int32), x.new_empty(n * c_in)
    row_nnz = torch.empty(n, dtype=torch.long)
    parts = _LIBRARY.nonzero_rows_matmul(x.data_ptr(), n, c_in, weight.data_ptr(), weight.size(1), out.data_ptr(),
                                         cols.data_ptr(), vals.data_ptr(), row_nnz.data_ptr(),
                                         torch.get_num_threads())
    crow = pointer_from_counts(row_nnz)
    shares = [(n * t // parts, n * (t + 1) // parts) for t in range(parts)]
    spans = [(lo * c_in, lo * c_in + int(crow[hi] - crow[lo])) for lo, hi in shares]
    cols = torch.cat([cols[a:b] for a, b in spans])
    vals = torch.cat([vals[a:b] for a, b in spans])
    return out, (crow, cols, vals)


def check_csr_weight_grad(csr: Tuple[Tensor, Tensor, Tensor], num_columns: int, grad: Tensor):
    """The arguments of :func:`csr_weight_grad` checked, as plain contiguous tensors ``(crow, cols, vals, grad)``
    (the kernel checks every entry's row range and column)."""
    kernel = "csr_weight_grad"
    _refuse_tracing(kernel)
    if not (isinstance(csr, tuple) and len(csr) == 3):
        raise TypeError(f"{kernel}: csr must be the (crow, cols, vals) tuple of nonzero_rows_matmul, got "
                        f"{type(csr).__name__}")
    if not isinstance(num_columns, int) or num_columns < 0:
        raise ValueError(f"{kernel}: num_columns must be an int >= 0 (x's columns), got {num_columns!r}")
    crow, cols, vals = csr
    grad = _buffer(kernel, "grad", grad, torch.float32, (_sizes(kernel, "grad", grad, ("N", "C_out"))[1],),
                   strides=ANY_STRIDES)
    _channels_of_16(kernel, "grad", grad.size(1))
    crow = _buffer(kernel, "crow", crow, torch.int64, (), grad.size(0) + 1, ANY_STRIDES, "one per row and one")
    cols = _buffer(kernel, "cols", cols, torch.int32, (), strides=ANY_STRIDES)
    vals = _buffer(kernel, "vals", vals, torch.float32, (), cols.numel(), ANY_STRIDES, "one per column index")
    return crow.contiguous(), cols.contiguous(), vals.contiguous(), grad.contiguous()


def csr_weight_grad(csr: Tuple[Tensor, Tensor, Tensor], num_columns: int, grad: Tensor) -> Tensor:
    """``X^T grad`` (``[num_columns, C_out]``) for ``X`` in CSR form ``(crow, cols, vals)`` from
    :func:`nonzero_rows_matmul`; summed in fixed blocks of rows: the same bits for any thread count."""
    crow, cols, vals, grad = check_csr_weight_grad(csr, num_columns, grad)
    out = grad.new_empty(num_columns, grad.size(1))
    status = _LIBRARY.csr_weight_grad(crow.data_ptr(), cols.data_ptr(), vals.data_ptr(), cols.numel(),
                                      crow.numel() - 1, num_columns, grad.data_ptr(), grad.size(1), out.data_ptr(),
                                      torch.get_num_threads())
    if status != 0:
        raise ValueError(f"csr_weight_grad: every row's entries must lie in [0, {cols.numel()}) and every column in "
                         f"[0, {num_columns}); pass the CSR form nonzero_rows_matmul returned")
    return out


def check_column_moments(x: Tensor) -> Tensor:
    """The argument of :func:`column_moments` checked, as a plain contiguous tensor."""
    kernel = "column_moments"
    _refuse_tracing(kernel)
    return _buffer(kernel, "x", x, torch.float32, (_sizes(kernel, "x", x, ("N", "C"))[1],),
                   strides=ANY_STRIDES).contiguous()


def column_moments(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``(mean [C], biased var [C])`` of the rows ``x [N, C]``, float64: two passes (the sum, then the squares
    about the mean), each summed in fixed blocks of rows: the same bits for any thread count."""
    x = check_column_moments(x)
    sums, mean, squares = (torch.empty(x.size(1), dtype=torch.float64) for _ in range(3))
    _LIBRARY.column_moments(x.data_ptr(), x.size(0), x.size(1), sums.data_ptr(), mean.data_ptr(),
                            squares.data_ptr(), torch.get_num_threads())
    return mean, squares / max(x.size(0), 1)


def check_column_grad_sums(grad: Tensor, x: Tensor, mean: Tensor, inv_std: Tensor):
    """The arguments of :func:`column_grad_sums` checked, as plain contiguous tensors ``(grad, x, mean,
    inv_std)``."""
    kernel = "column_grad_sums"
    _refuse_tracing(kernel)
    n, c = _sizes(kernel, "x", x, ("N", "C"))
    x = _buffer(kernel, "x", x, torch.float32, (c,), strides=ANY_STRIDES)
    grad = _buffer(kernel, "grad", grad, torch.float32, (c,), n, ANY_STRIDES)
    mean = _buffer(kernel, "mean", mean, torch.float64, (), c, ANY_STRIDES, "one per column of x")
    inv_std = _buffer(kernel, "inv_std", inv_std, torch.float64, (), c, ANY_STRIDES, "one per column of x")
    return grad.contiguous(), x.contiguous(), mean.contiguous(), inv_std.contiguous()


def column_grad_sums(grad: Tensor, x: Tensor, mean: Tensor, inv_std: Tensor) -> Tuple[Tensor, Tensor]:
    """``(sum of grad, sum of grad * (x - mean) * inv_std)`` over the rows, float64 ``[C]`` each (``mean`` and
    ``inv_std`` float64 ``[C]``); one pass, fixed blocks of rows."""
    grad, x, mean, inv_std = check_column_grad_sums(grad, x, mean, inv_std)
    sum_g, sum_g_xhat = (torch.empty(x.size(1), dtype=torch.float64) for _ in range(2))
    _LIBRARY.column_grad_sums(grad.data_ptr(), x.data_ptr(), x.size(0), x.size(1), mean.data_ptr(),
                              inv_std.data_ptr(), sum_g.data_ptr(), sum_g_xhat.data_ptr(), torch.get_num_threads())
    return sum_g, sum_g_xhat


#: widest products :func:`rows_outer` serves as a weight gradient (``A x B``); wider ones are faster in a GEMM
MAX_OUTER = (32, 16)


def serves_outer(x: Tensor, g: Tensor) -> bool:
    """Whether :func:`rows_outer` computes the weight gradient ``x^T g``: float32 CPU rows with at most
    ``MAX_OUTER`` columns (Cora's second layer, 16 x 7: 18 us against 23 us for torch's matmul)."""
    return (x.dim() == 2 and g.dim() == 2 and x.size(1) <= MAX_OUTER[0] and g.size(1) <= MAX_OUTER[1]
            and cpu_float32(x, g))


def check_rows_outer(x: Optional[Tensor], g: Tensor) -> Tuple[Optional[Tensor], Tensor]:
    """The arguments of :func:`rows_outer` checked, as plain contiguous tensors ``(x, g)``."""
    kernel = "rows_outer"
    _refuse_tracing(kernel)
    n, b = _sizes(kernel, "g", g, ("N", "B"))
    g = _buffer(kernel, "g", g, torch.float32, (b,), strides=ANY_STRIDES).contiguous()
    if x is None:
        return None, g
    x = _buffer(kernel, "x", x, torch.float32, (_sizes(kernel, "x", x, ("N", "A"))[1],), n, ANY_STRIDES)
    return x.contiguous(), g


def rows_outer(x: Optional[Tensor], g: Tensor, sums: bool = False) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(x^T g [A, B], column sums of g [B])`` for float32 CPU rows ``x [N, A]`` and ``g [N, B]`` (``x`` None:
    the sums only; ``sums`` False: no sums): a layer's weight and bias gradients. Fixed blocks of rows added in
    order: the same bits for any thread count."""
    x, g = check_rows_outer(x, g)
    a = 0 if x is None else x.size(1)
    out = g.new_empty(a, g.size(1)) if x is not None else None
    column_sums = g.new_empty(g.size(1)) if sums else None
    _LIBRARY.rows_outer(_address(x), a, g.data_ptr(), g.size(1), g.size(0), _address(out), _address(column_sums),
                        torch.get_num_threads())
    return out, column_sums


def is_transposed(x: Tensor) -> bool:
    """``x`` is a 2-D view of a contiguous matrix's transpose (``w.t()``)."""
    return x.dim() == 2 and x.size(0) > 1 and x.size(1) > 1 and x.stride() == (1, x.size(0))


def check_transpose(src: Tensor, dst: Tensor) -> Tuple[Tensor, Tensor]:
    """The arguments of :func:`_transpose` checked, as plain tensors ``(src, dst)``: ``src [R, C]`` contiguous and
    ``dst`` a transposed view of a contiguous ``[C, R]`` matrix."""
    kernel = "transpose"
    _refuse_tracing(kernel)
    rows, cols = _sizes(kernel, "src", src, ("R", "C"))
    src = _buffer(kernel, "src", src, torch.float32, (cols,))
    dst = _buffer(kernel, "dst", dst, torch.float32, (cols,), rows, ROWS_OR_COLUMNS)
    if dst.is_contiguous() and rows > 1 and cols > 1:
        raise ValueError(f"{kernel}: dst must be a transposed view (dst.t() contiguous), got strides {dst.stride()}")
    return src, dst


def _transpose(src: Tensor, dst: Tensor) -> None:
    """``dst = src`` for a contiguous ``src [R, C]`` and a transposed view ``dst [R, C]`` (its memory is
    ``[C, R]``)."""
    src, dst = check_transpose(src, dst)
    _LIBRARY.transpose(src.data_ptr(), src.size(0), src.size(1), dst.data_ptr())


def contiguous_rows(x: Tensor) -> Tensor:
    """``x.contiguous()``, with a transposed float32 CPU matrix (a layer's ``weight.t()``) copied by the native
    transpose (torch's strided copy is several times slower)."""
    if x.is_contiguous():
        return x
    if is_transposed(x) and cpu_float32(x):
        out = x.new_empty(x.shape)
        _transpose(x.t(), out.t())
        return out
    return x.contiguous()


def copy_rows_(out: Tensor, x: Tensor) -> Tensor:
    """``out.copy_(x)``, through the native transpose when ``out`` is a transposed view (the gradient of a
    layer's ``weight.t()``, written in the weight's own layout) and ``x`` a contiguous float32 CPU matrix."""
    if is_transposed(out) and x.is_contiguous() and cpu_float32(out, x) and out.shape == x.shape:
        _transpose(x, out)
        return out
    return out.copy_(x)


#: widest rows the fused aggregate-and-transform kernel sums in registers (:func:`csr_rows_matmul`)
MAX_FUSED_CHANNELS = 64


def _address(tensor: Optional[Tensor]) -> Optional[int]:
    return None if tensor is None else tensor.data_ptr()


def _indices(index: Tensor) -> Tensor:
    """``index`` as contiguous int64 (a torch CSR tensor may carry int32 indices)."""
    return index if index.dtype == torch.int64 and index.is_contiguous() else index.to(torch.int64).contiguous()


def _check_index_dtype(owner: str, name: str, index) -> None:
    if not isinstance(index, Tensor) or index.dtype not in (torch.int32, torch.int64):
        got = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{owner}: {name} must be an int64 or int32 tensor, got {got}")


def _column_indices(col: Tensor, order: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], bool]:
    """``(col, order, index32)``: both int32 if both are given so (half the bytes the row kernel reads), else both
    int64; contiguous."""
    if order is None:
        return (col.contiguous(), None, True) if col.dtype == torch.int32 else (_indices(col), None, False)
    if col.dtype == torch.int32 and order.dtype == torch.int32:
        return col.contiguous(), order.contiguous(), True
    return _indices(col), _indices(order), False


def compact_indices(index: Tensor, bound: int) -> Tensor:
    """``index`` (entries in ``[0, bound)``) as contiguous int32 for the CSR row kernels when they are loaded, it is
    on the CPU and ``bound`` fits (a cached graph's columns: half the bytes read per step), else as it is."""
    if AVAILABLE and index.is_cpu and bound <= torch.iinfo(torch.int32).max:
        return index.to(torch.int32).contiguous()
    return index


class CsrOperand:
    """A CSR matrix's index arrays prepared once for the row kernels: ``crow`` int64, ``col`` (and ``order``, the
    position of each entry's value) int32 where they fit, contiguous, kept alive here with their addresses, so
    :func:`csr_rows_prepared` passes them without converting or checking them again (the kernel still checks
    every entry against the rows and values it is given)."""

    __slots__ = ("tensors", "num_rows", "num_entries", "crow", "col", "order", "index32")

    def __init__(self, crow: Tensor, col: Tensor, order: Optional[Tensor] = None, owner: str = "CsrOperand"):
        _refuse_tracing(owner)
        for name, index in (("crow", crow), ("col", col), ("order", order)):
            if index is not None:
                _check_index_dtype(owner, name, index)
        crow = _buffer(owner, "crow", _indices(crow), torch.int64, ())
        if crow.numel() == 0:
            raise ValueError(f"{owner}: crow must have one entry per row and one, got none")
        col, order, index32 = _column_indices(col, order)
        index_dtype = torch.int32 if index32 else torch.int64
        col = _buffer(owner, "col", col, index_dtype, ())
        if order is not None:
            order = _buffer(owner, "order", order, index_dtype, (), col.numel(), meaning="one per entry")
        self.tensors = (crow, col, order)
        self.num_rows, self.num_entries, self.index32 = crow.numel() - 1, col.numel(), int(index32)
        self.crow, self.col = crow.data_ptr(), col.data_ptr()
        self.order = None if order is None else order.data_ptr()


#: ``layout`` bits of the row kernel: out, src or weight given as a transposed view of a row-major matrix
_OUT_COLUMNS, _SRC_COLUMNS, _WEIGHT_COLUMNS = 1, 2, 4
#: the largest transposed ``src`` the row kernel copies into rows per thread (a layer's weight), in floats
MAX_TRANSPOSED_SRC = 1 << 20


def kernel_rows(x: Tensor) -> Tensor:
    """``x [N, C]`` as :func:`csr_rows_prepared` reads it: as it is when contiguous or a transposed view of at most
    :data:`MAX_TRANSPOSED_SRC` values (a layer's ``weight.t()``, read in place: the kernel's threads transpose it
    for themselves), else a contiguous copy."""
    if x.is_contiguous() or (is_transposed(x) and x.numel() <= MAX_TRANSPOSED_SRC):
        return x
    return contiguous_rows(x)


def _layout(out: Tensor, src: Tensor, weight: Optional[Tensor]) -> int:
    """The kernel's ``layout`` bits for operands that are contiguous or transposed views (see
    :func:`csr_rows_prepared`)."""
    return ((_OUT_COLUMNS if not out.is_contiguous() else 0) | (_SRC_COLUMNS if not src.is_contiguous() else 0)
            | (_WEIGHT_COLUMNS if weight is not None and not weight.is_contiguous() else 0))


def check_csr_rows(kernel: str, operand: CsrOperand, out: Tensor, values: Tensor, src: Tensor,
                   bias: Optional[Tensor], weight: Optional[Tensor], side: Optional[Tensor], out_strides: str):
    """The arguments of the row kernel (:func:`csr_rows_add`, :func:`csr_rows_matmul`, :func:`csr_rows_prepared`)
    checked, as plain tensors ``(out, values, src, bias, weight, side)`` in the layouts it reads: ``src`` and
    ``weight`` contiguous or transposed views (:func:`kernel_rows`), ``out`` with ``out_strides``. The kernel checks
    every entry of ``operand`` against ``src``'s rows and the values given."""
    _refuse_tracing(kernel)
    if not isinstance(operand, CsrOperand):
        raise TypeError(f"{kernel}: operand must be a CsrOperand, got {type(operand).__name__}")
    c = _sizes(kernel, "src", src, ("N_src", "C"))[1]
    src = kernel_rows(_buffer(kernel, "src", src, torch.float32, (c,), strides=ANY_STRIDES))
    c_out = c
    if weight is not None:
        c_out = _sizes(kernel, "weight", weight, ("C", "C_out"))[1]
        weight = kernel_rows(_buffer(kernel, "weight", weight, torch.float32, (c_out,), c, ANY_STRIDES))
    out = _buffer(kernel, "out", out, torch.float32, (c_out,), strides=out_strides)
    if out.size(0) != operand.num_rows:
        raise ValueError(f"{kernel}: crow must have {out.size(0) + 1} entries (one per output row and one), "
                         f"got {operand.num_rows + 1}")
    values = _buffer(kernel, "values", values, torch.float32, (), strides=ANY_STRIDES).contiguous()
    if bias is not None:
        bias = _buffer(kernel, "bias", bias, torch.float32, (), c_out, ANY_STRIDES, "one per output channel")
        bias = bias.contiguous()
    if side is not None:
        side = _buffer(kernel, "side", side, torch.float32, (c,), out.size(0))
    return out, values, src, bias, weight, side


def _run_csr(kernel: str, operand: CsrOperand, out: Tensor, values: Tensor, src: Tensor, accumulate: bool,
             bias: Optional[Tensor], weight: Optional[Tensor], side: Optional[Tensor], out_strides: str) -> Tensor:
    """The row kernel after :func:`check_csr_rows` (see :func:`csr_rows_prepared`)."""
    out, values, src, bias, weight, side = check_csr_rows(kernel, operand, out, values, src, bias, weight, side,
                                                          out_strides)
    num_values, (num_src, c) = values.numel(), src.shape
    status = _LIBRARY.csr_rows_add(
        out.data_ptr(), operand.num_rows, c, operand.crow, operand.col, operand.num_entries, values.data_ptr(),
        operand.order, num_values, src.data_ptr(), num_src, int(accumulate), _address(bias), _address(weight),
        out.size(1), _address(side), operand.index32, _layout(out, src, weight), torch.get_num_threads())
    if status == 2:
        raise ValueError(f"{kernel}: rows of {c} channels are multiplied by a weight or stored transposed only up to "
                         f"{MAX_FUSED_CHANNELS} channels, and not both at once")
    if status != 0:
        raise ValueError(f"{kernel}: crow must rise from 0 to the {operand.num_entries} entries, every entry needs a "
                         f"value ({num_values} given), every column must be in [0, {num_src}) and every order "
                         f"entry in [0, {num_values})")
    return out


def csr_rows_prepared(operand: CsrOperand, out: Tensor, values: Tensor, src: Tensor, bias: Optional[Tensor] = None,
                      weight: Optional[Tensor] = None, side: Optional[Tensor] = None) -> Tensor:
    """The store mode of :func:`csr_rows_add` (``weight`` None) or :func:`csr_rows_matmul` for a prepared
    ``operand`` (the engine's graph path): float32 CPU ``out [operand.num_rows, C_out]``, ``values``,
    ``src [N_src, C]``, ``weight [C, C_out]`` (``C <= 64``), ``bias [C_out]`` and ``side [operand.num_rows, C]``,
    contiguous (checked by :func:`check_csr_rows`).

    ``out``, ``src`` and ``weight`` may also be transposed views of row-major matrices (:func:`is_transposed`: a
    layer's ``weight.t()``), read or written in place: ``out`` (no ``weight``, ``C <= 64``) then receives each
    row's sums as a column (a weight gradient in the weight's own layout), and a transposed ``src`` (at most
    :data:`MAX_TRANSPOSED_SRC` values: see :func:`kernel_rows`) is copied into rows by each thread for itself."""
    return _run_csr("csr_rows_prepared", operand, out, values, src, False, bias, weight, side, ROWS_OR_COLUMNS)


def _csr_call(kernel: str, out: Tensor, crow: Tensor, col: Tensor, values: Tensor, src: Tensor,
              order: Optional[Tensor], accumulate: bool, bias: Optional[Tensor], weight: Optional[Tensor],
              side: Optional[Tensor]) -> Tensor:
    """The row kernel on the CSR matrix ``(crow, col)``, into a contiguous ``out``."""
    return _run_csr(kernel, CsrOperand(crow, col, order, kernel), out, values, src, accumulate, bias, weight, side,
                    ROWS)


def csr_rows_add(out: Tensor, crow: Tensor, col: Tensor, values: Tensor, src: Tensor, order: Optional[Tensor] = None,
                 accumulate: bool = True, bias: Optional[Tensor] = None) -> Tensor:
    """``out[o] (+)= sum_{q in crow[o]:crow[o + 1]} values[order[q]] * src[col[q]]`` (``values[q]`` without
    ``order``), added to ``out`` or, unless ``accumulate``, stored into it plus ``bias [C]`` (optional); float32
    CPU ``out`` contiguous. Each row sums its terms in four (two above 16 channels) interleaved partial sums added
    pairwise: a fixed order, the same bits for any thread count.

    Raises:
        ValueError: if ``crow`` does not rise from 0 to ``col``'s length, a column is outside ``src`` or an
            ``order`` entry outside ``values``.
    """
    if bias is not None and accumulate:
        raise ValueError("csr_rows_add: a bias is added in store mode only (accumulate=False)")
    return _csr_call("csr_rows_add", out, crow, col, values, src, order, accumulate, bias, None, None)


def csr_rows_matmul(out: Tensor, crow: Tensor, col: Tensor, values: Tensor, src: Tensor, weight: Tensor,
                    bias: Optional[Tensor] = None, order: Optional[Tensor] = None,
                    side: Optional[Tensor] = None) -> Tensor:
    """``out [N, C_out] = bias + (A @ src) @ weight`` in one pass for the CSR matrix ``A`` of :func:`csr_rows_add`
    and ``src [N_src, C]`` with ``C <= 64``: each row's sum stays in registers and is multiplied there (a small
    layer's aggregation and transform without the ``[N, C]`` intermediate); ``side [N, C]`` (optional) receives
    ``A @ src``. Fixed summation order: the same bits for any thread count.
    """
    c, c_out = _sizes("csr_rows_matmul", "src", src, ("N_src", "C"))[1], _sizes("csr_rows_matmul", "out", out,
                                                                                ("N", "C_out"))[1]
    if c > MAX_FUSED_CHANNELS or _sizes("csr_rows_matmul", "weight", weight, ("C", "C_out")) != (c, c_out):
        raise ValueError(f"csr_rows_matmul: weight must be [C, C_out] = [{c}, {c_out}] with C <= "
                         f"{MAX_FUSED_CHANNELS}, got {list(weight.shape)}")
    return _csr_call("csr_rows_matmul", out, crow, col, values, src, order, False, bias, weight, side)
