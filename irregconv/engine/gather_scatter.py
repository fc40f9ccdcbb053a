"""The one operator: gather input rows through a rulebook, multiply by each offset's weight, scatter-add.

``out[o] = sum_k sum_{p in offset k, out_idx[p] = o} pair_scale[p] * feats[in_idx[p]] @ weight[k]``

Sparse convolution, graph convolution and dense-grid convolution are this operator with different
rulebooks. The kernel for an offset is chosen from the rulebook, never by the caller:

* the identity offset (submanifold centre) is a plain matmul, no gather and no scatter; it initialises
  the output;
* injective offsets of an ungrouped float32 CPU convolution with ``C_out`` a multiple of 16 run on the fused
  native kernel (:mod:`~irregconv.engine.backends.native`, built at install): the gathered rows and their
  products never leave the registers, 2x faster than the three passes below, the same bits;
* other injective offsets (every convolution: one pair per output row per offset) are processed in chunks of
  consecutive offsets: one gather of the chunk's input rows into a reused scratch buffer
  (:mod:`~irregconv.workspace`), one matmul per offset into a second buffer, one scatter of the
  whole chunk (:func:`~irregconv.engine.backends.scatter_add_rows`: each output row summed by one thread
  in offset order, so no atomics and no dependence on the thread count);
* non-injective offsets (graph edges) are CSR sparse-matrix products over pairs sorted by output,
  i.e. sorted segment sums, deterministic on every device; the dense transform runs on whichever side
  has fewer rows (``C_out <= C_in``: transform first, then aggregate), and for a small one-offset layer
  (up to 32 input channels) inside the CSR kernel itself, each row's sum multiplied while still in
  registers; the adjoint runs over the transposed pairs, reading the forward pairs' scales in place;
* sparse features (a torch sparse ``feats``, bag-of-words node features) are multiplied by the weight
  through their nonzeros with the same CSR kernel, and their weight gradient is the CSR product over
  their transposed pattern (kept while the pattern is unchanged); dense features that are mostly zeros
  are transformed, and their weight gradient taken, through their nonzeros (native kernel);
* a one-offset graph call on float32 CPU rows with scales that need no gradient runs those kernels on CSR
  operands prepared once per graph (int32 indices), without the per-call dispatch of the general path:
  the same bits, less Python per layer call.

An optional ``bias`` is added to every output row in the same autograd node (stored with the sums by the
CSR kernel). Every path sums in a fixed order, so the result has the same bits on every run and for any
number of threads (tested). Backward is written by hand for ``feats``, ``weight``, ``pair_scale`` and
``bias``; the operator is differentiable once (no double backward).

float16 and bfloat16 rows on the CPU, and any call inside an autocast region, compute in float32: the inputs are
rounded to the half (or autocast) dtype, as torch's convolutions round theirs under autocast, the products summed by
the float32 paths above, and the output rounded back to that dtype.

A call being traced (``torch.compile``, ``torch.export``) goes through the operator
``torch.ops.irregconv.gather_scatter`` (:mod:`irregconv.ops`), the rulebook passed as its tensors; its kernels run
:func:`forward_kernel` and :func:`backward_kernel` here, the paths above: compiled and eager results have the same bits.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._autograd import differentiable_once
from ..rulebook import Rulebook, build_graph_rulebook
from ..rulebook.cache import IdentityCache
from ..rulebook.rulebook import pointer_from_counts, rows_from_pointer
from .backends import csr_rows_add, native, scatter_add_rows
from .reference import apply_weight
from ..workspace import CHUNK_BYTES, scratch_rows


def _apply_weight_t(grad: Tensor, weight_k: Optional[Tensor], out: Optional[Tensor] = None) -> Tensor:
    """Adjoint of :func:`apply_weight` with respect to its input (``out``: optional result buffer)."""
    if weight_k is None:
        return grad
    if weight_k.dim() == 2:
        return torch.mm(grad, weight_k.t(), out=out) if out is not None else grad @ weight_k.t()
    groups, cin, cout = weight_k.shape
    if cin == 1 and cout == 1:
        return torch.mul(grad, weight_k.reshape(groups), out=out)
    result = torch.bmm(grad.reshape(-1, groups, cout).transpose(0, 1),
                       weight_k.transpose(1, 2)).transpose(0, 1).reshape(-1, groups * cin)
    return out.copy_(result) if out is not None else result


def _weight_grad(x: Tensor, grad: Tensor, weight_k: Tensor) -> Tensor:
    """Gradient of one offset's weight: ``x [P, C_in]``, ``grad [P, C_out]``."""
    if weight_k.dim() == 2:
        return native.rows_outer(x, grad)[0] if native.serves_outer(x, grad) else x.t() @ grad
    groups, cin, cout = weight_k.shape
    if cin == 1 and cout == 1:
        return (x * grad).sum(dim=0).reshape(groups, 1, 1)
    return torch.bmm(x.reshape(-1, groups, cin).permute(1, 2, 0), grad.reshape(-1, groups, cout).transpose(0, 1))


def _bias_grad(grad_out: Tensor) -> Tensor:
    """The column sums of ``grad_out [N, C_out]`` (natively for float32 CPU rows: fixed blocks, 3-4x faster)."""
    return native.rows_outer(None, grad_out, sums=True)[1] if native.serves_rows(grad_out) else grad_out.sum(0)


def _csr(rulebook: Rulebook, start: int, end: int) -> Tuple[Tensor, Tensor]:
    """``(crow [N_out + 1], col)``: the CSR form of pairs ``start:end`` (sorted by output), cached on the rulebook;
    ``col`` int32 where the input rows allow (see :func:`native.compact_indices`)."""
    key = ("csr", start, end)
    csr = rulebook._derived.get(key)
    if csr is None:
        crow = pointer_from_counts(torch.bincount(rulebook.out_idx[start:end], minlength=rulebook.num_out))
        csr = rulebook._derived[key] = (crow, native.compact_indices(rulebook.in_idx[start:end], rulebook.num_in))
    return csr


def _pair_order(transposed: Rulebook, start: int, end: int) -> Tensor:
    """Pairs ``start:end`` of a transposed rulebook as positions of the forward pairs (to read their scales in
    place), cached like :func:`_csr`'s columns."""
    key = ("pair_order", start, end)
    order = transposed._derived.get(key)
    if order is None:
        order = transposed._derived[key] = native.compact_indices(transposed._derived["pair_order"][start:end],
                                                                  transposed.num_pairs)
    return order


def _span(t: Optional[Tensor], start: int, end: int) -> Optional[Tensor]:
    """``t[start:end]``, or ``t`` itself when that is all of it (a graph's one offset: no view to make)."""
    return t if t is None or (start == 0 and end == t.size(0)) else t[start:end]


def _aggregate(rulebook: Rulebook, start: int, end: int, values: Optional[Tensor], src: Tensor,
               out: Optional[Tensor] = None, order: Optional[Tensor] = None, bias: Optional[Tensor] = None) -> Tensor:
    """``A @ src`` for the adjacency ``A [N_out, N_in]`` of pairs ``start:end``, added into ``out`` when given,
    else a new tensor plus ``bias`` (optional). Pair ``p``'s weight is ``values[p - start]``, or
    ``values[order[p - start]]`` with ``order``, or 1."""
    overwrite = out is None
    if overwrite:
        out = src.new_empty(rulebook.num_out, src.size(1))
    crow, col = _csr(rulebook, start, end)
    return csr_rows_add(out, crow, col, values, src, order, overwrite, bias if overwrite else None)


def _fused(src: Tensor, weight_k: Optional[Tensor], rulebook: Rulebook) -> bool:
    """Whether ``(A @ src) @ weight_k`` runs as one pass of the native aggregate-and-transform kernel: a one-offset
    rulebook, float32 CPU, an ungrouped weight, dense ``src`` of at most 32 channels (64 when the transform does not
    narrow them). Each row's sum then stays in registers: no ``[N, C]`` intermediate and no separate GEMM, which on
    Cora's second layer (16 -> 7 channels) are two thirds of its time."""
    if weight_k is None or weight_k.dim() != 2 or rulebook.kernel_volume != 1 or src.is_sparse_csr:
        return False
    return _one_pass(*weight_k.shape) and native.serves_rows(src) and native.serves_rows(weight_k)


def _one_pass(c_in: int, c_out: int) -> bool:
    """Whether rows of ``c_in`` channels are summed and transformed to ``c_out`` in one pass (see :func:`_fused`)."""
    return c_in <= 32 or (c_in <= native.MAX_FUSED_CHANNELS and c_out >= c_in)


def _fused_aggregate(rulebook: Rulebook, values: Optional[Tensor], src: Tensor, weight_k: Tensor,
                     bias: Optional[Tensor] = None, order: Optional[Tensor] = None,
                     side: Optional[Tensor] = None) -> Tensor:
    """``bias + (A @ src) @ weight_k`` for the one-offset adjacency ``A`` (see :func:`_fused`); ``side`` receives
    ``A @ src``."""
    if values is None:
        values = torch.ones(rulebook.num_pairs, dtype=src.dtype, device=src.device)
    out = src.new_empty(rulebook.num_out, weight_k.size(1))
    crow, col = _csr(rulebook, 0, rulebook.num_pairs)
    return native.csr_rows_matmul(out, crow, col, values if values.dtype == src.dtype else values.to(src.dtype),
                                  src, weight_k, bias, order, side)


class _SparsePattern(NamedTuple):
    """What the engine keeps of sparse CSR features ``x [N, C]`` while their pattern is unchanged."""
    #: ``x``'s column indices, int32 where they fit (the product through its nonzeros reads them)
    col: Tensor
    #: the rulebook of ``x^T``: pairs row -> column sorted by column
    transposed: Rulebook
    #: ``[nnz]`` the position in ``x.values()`` of each pair of ``transposed`` (int32 where it fits)
    value_order: Tensor
    #: ``x``'s indices, and ``transposed``'s with and without ``value_order``, for the prepared native path
    forward: native.CsrOperand
    adjoint: native.CsrOperand
    adjoint_in_order: native.CsrOperand


class _SparseFeatures:
    """What the engine keeps of the last sparse CSR features seen (one entry: at most one pattern alive).

    Their :class:`_SparsePattern` is shared by every tensor with the same index tensors (dropout over the nonzeros
    makes new tensors on the same indices). A tensor seen again unchanged is recognised by itself and its version
    counter (one for its indices and values) before its index tensors are looked at, and once a forward has seen it
    twice its values are kept in the transposed order too, so the weight gradient reads them in sequence (3% of a
    Cora training step); new values, as every step of dropout makes, are read through the order instead.
    """

    def __init__(self):
        self.patterns = IdentityCache()
        self._x = self._version = self._pattern = self._values = None
        self._forwards = 0

    def pattern(self, x: Tensor, forward: bool = False) -> _SparsePattern:
        """The pattern of ``x``, built when its index tensors are new; ``forward``: a forward pass is reading it."""
        if not (x is self._x and x._version == self._version):
            self._pattern = self.patterns.get_or_build((x.crow_indices(), x.col_indices()), tuple(x.shape),
                                                       lambda: _build_sparse_pattern(x))
            self._x, self._version, self._values, self._forwards = x, x._version, None, 0
        self._forwards += forward
        return self._pattern

    def transposed_values(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """``(values, order)`` reading ``x``'s values in its transposed pattern's order: through the order until a
        second forward has seen the same unchanged ``x``, then a copy in that order (``order`` None)."""
        pattern = self.pattern(x)
        if self._forwards < 2:
            return x.values(), pattern.value_order
        if self._values is None:
            self._values = x.values()[pattern.value_order]
        return self._values, None


def _build_sparse_pattern(x: Tensor) -> _SparsePattern:
    rows = rows_from_pointer(x.crow_indices())
    transposed = build_graph_rulebook(torch.stack([rows, x.col_indices()]), x.size(0), x.size(1))
    col = native.compact_indices(x.col_indices(), x.size(1))
    value_order = native.compact_indices(transposed.pair_ids, col.numel())
    transposed_csr = _csr(transposed, 0, transposed.num_pairs)
    return _SparsePattern(col, transposed, value_order, native.CsrOperand(x.crow_indices(), col),
                          native.CsrOperand(*transposed_csr, value_order), native.CsrOperand(*transposed_csr))


_SPARSE_FEATURES = _SparseFeatures()


def _transform_first(weight_k: Optional[Tensor], feats: Tensor) -> bool:
    """For a non-injective offset: multiply before aggregating when that shrinks the rows moved (always for
    sparse features: their product costs one pass over the nonzeros)."""
    if weight_k is None:
        return False
    if feats.is_sparse_csr:
        return True
    c_in = weight_k.size(0) if weight_k.dim() == 2 else weight_k.size(0) * weight_k.size(1)
    c_out = weight_k.size(1) if weight_k.dim() == 2 else weight_k.size(0) * weight_k.size(2)
    return c_out <= c_in


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=1)


def _centre(rulebook: Rulebook, pair_scale: Optional[Tensor]) -> Optional[int]:
    """The offset run as a plain matmul (no gather, no scatter): the identity, unless pairs carry scales."""
    return rulebook.identity_offset if pair_scale is None else None


def _chunks(rulebook: Rulebook, skip: Optional[int], row_bytes: int) -> List[Tuple[int, int, tuple, tuple]]:
    """Runs of consecutive offsets (``skip`` left out) whose gathered rows fit a scratch buffer.

    Returns ``(start, end, ((k, s, e), ...), ((s - start, e - start), ...))`` per chunk: pairs
    ``start:end`` of the rulebook, its offsets, and their rows within the chunk. An offset larger than the
    buffer gets a chunk of its own.
    """
    rows_limit = max(1, CHUNK_BYTES // max(row_bytes, 1))
    key = ("chunks", skip, rows_limit)
    chunks = rulebook._derived.get(key)
    if chunks is None:
        runs, run = [], []
        for k, s, e in rulebook.offset_slices():
            if k == skip:
                continue
            if run and (s != run[-1][2] or e - run[0][1] > rows_limit):
                runs.append(run)
                run = []
            run.append((k, s, e))
        if run:
            runs.append(run)
        chunks = rulebook._derived[key] = [
            (run[0][1], run[-1][2], tuple(run), tuple((s - run[0][1], e - run[0][1]) for _, s, e in run))
            for run in runs]
    return chunks


def _per_offset(x: Tensor, weight: Optional[Tensor], chunk: tuple, name: str, channels: int,
                adjoint: bool = False) -> Tensor:
    """Each offset's rows of the gathered ``x`` times its weight (or its adjoint), into scratch ``name``."""
    if weight is None:
        return x
    start, _, offsets, _ = chunk
    out = scratch_rows(name, x.size(0), channels, x)
    for k, s, e in offsets:
        (_apply_weight_t if adjoint else apply_weight)(x[s - start:e - start], weight[k], out=out[s - start:e - start])
    return out


def _gather(name: str, source: Tensor, index: Tensor) -> Tensor:
    """``source[index]`` in the scratch buffer ``name``."""
    return torch.index_select(source, 0, index, out=scratch_rows(name, index.numel(), source.size(1), source))


def _forward_pairs(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], rulebook: Rulebook,
                   c_out: int) -> Tensor:
    """Forward over a rulebook whose offsets are one to one: chunks of offsets gathered at once, one matmul
    per offset, one deterministic scatter per chunk."""
    centre = _centre(rulebook, pair_scale)
    if centre is None:
        out = feats.new_zeros(rulebook.num_out, c_out)
    else:
        out = feats.clone() if weight is None else apply_weight(feats, weight[centre]).contiguous()
    if native.serves(feats, weight, pair_scale, c_out):
        return native.conv_accumulate(out, feats, weight, rulebook.in_idx, rulebook.out_idx, rulebook.offset_ptr,
                                      centre)
    row_bytes = max(feats.size(1), c_out) * feats.element_size()
    for chunk in _chunks(rulebook, centre, row_bytes):
        start, end, _, rows = chunk
        msg = _per_offset(_gather("in", feats, rulebook.in_idx[start:end]), weight, chunk, "msg", c_out)
        if pair_scale is not None:
            msg.mul_(pair_scale[start:end].unsqueeze(1))
        scatter_add_rows(out, rulebook.out_idx[start:end], msg, rows)
    return out


def _inputs_ascending(rulebook: Rulebook) -> bool:
    """Whether the input rows ascend within every offset (cached): then the swapped pairs are already sorted
    by their new output row, as the native kernel needs."""
    ascending = rulebook._derived.get("inputs_ascending")
    if ascending is None:
        steps = rulebook.in_idx[1:] >= rulebook.in_idx[:-1]
        starts = rulebook.offset_ptr[1:-1]
        starts = starts[(starts > 0) & (starts < rulebook.num_pairs)]
        steps[starts.to(steps.device) - 1] = True  # a new offset may start anywhere
        ascending = rulebook._derived["inputs_ascending"] = bool(steps.all())
    return ascending


def _adjoint_pairs(rulebook: Rulebook, weight: Tensor):
    """``(in_idx, out_idx, offset_ptr, weight)`` of the adjoint (``grad_feats`` from ``grad_out``) as a forward
    pass: the transposed rulebook's pairs, each offset's weight to be transposed by the caller.

    Two cases need no transpose (a sort): a submanifold rulebook of a symmetric region is its own transpose with
    offset ``m`` taking the weight of its mirror, and a rulebook whose inputs ascend within every offset (every
    rulebook built on sorted sites: each offset maps sites monotonically) only swaps its two index arrays.
    """
    mirror = rulebook._derived.get("mirror")
    if mirror is not None:
        return rulebook.in_idx, rulebook.out_idx, rulebook.offset_ptr, weight[mirror]
    if _inputs_ascending(rulebook):
        return rulebook.out_idx, rulebook.in_idx, rulebook.offset_ptr, weight
    transposed = rulebook.transpose()
    return transposed.in_idx, transposed.out_idx, transposed.offset_ptr, weight


def _backward_pairs(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], rulebook: Rulebook,
                    grad_out: Tensor, needs: Tuple[bool, bool, bool]):
    need_feats, need_weight, need_scale = needs
    centre = _centre(rulebook, pair_scale)
    grad_feats = grad_weight = grad_scale = None
    if need_feats:
        if centre is None:
            grad_feats = torch.zeros_like(feats)
        else:
            grad_feats = grad_out.clone() if weight is None else _apply_weight_t(grad_out, weight[centre]).contiguous()
    if need_weight:
        grad_weight = torch.zeros_like(weight, memory_format=torch.contiguous_format)
        if centre is not None:
            grad_weight[centre] = _weight_grad(feats, grad_out, weight[centre])
    if need_scale:
        grad_scale = torch.zeros_like(pair_scale)
    if need_feats and native.serves(grad_out, weight, pair_scale, feats.size(1)):
        in_idx, out_idx, offset_ptr, weight_t = _adjoint_pairs(rulebook, weight)
        native.conv_accumulate(grad_feats, grad_out, weight_t.transpose(1, 2), in_idx, out_idx, offset_ptr, centre)
        need_feats = False
    if need_weight and native.serves(feats, weight, pair_scale, grad_out.size(1)):
        native.conv_weight_grad(grad_weight, feats, grad_out, rulebook.in_idx, rulebook.out_idx, rulebook.offset_ptr,
                                centre)
        need_weight = False
    if not (need_feats or need_weight or need_scale):
        return grad_feats, grad_weight, grad_scale
    row_bytes = max(feats.size(1), grad_out.size(1)) * feats.element_size()
    for chunk in _chunks(rulebook, centre, row_bytes):
        start, end, offsets, rows = chunk
        g = _gather("grad", grad_out, rulebook.out_idx[start:end])
        x = _gather("in", feats, rulebook.in_idx[start:end]) if (need_weight or need_scale) else None
        for k, s, e in offsets if need_scale else ():
            w = None if weight is None else weight[k]
            grad_scale[s:e] = _rowdot(apply_weight(x[s - start:e - start], w), g[s - start:e - start])
        if pair_scale is not None:
            g.mul_(pair_scale[start:end].unsqueeze(1))
        for k, s, e in offsets if need_weight else ():
            grad_weight[k] = _weight_grad(x[s - start:e - start], g[s - start:e - start], weight[k])
        if need_feats:
            grad_in = _per_offset(g, weight, chunk, "grad_in", feats.size(1), adjoint=True)
            scatter_add_rows(grad_feats, rulebook.in_idx[start:end], grad_in, rows)
    return grad_feats, grad_weight, grad_scale


def _transform(feats: Tensor, weight_k: Optional[Tensor], keep: dict) -> Tensor:
    """``feats @ weight_k`` (contiguous): for sparse CSR features a CSR product over their nonzeros; for dense
    features that are mostly zeros (bag-of-words) a product through their nonzeros whose CSR form goes to
    ``keep["csr"]`` for the weight gradient; else a GEMM."""
    if weight_k is None:
        return feats
    if feats.is_sparse_csr:
        out = feats.values().new_empty(feats.size(0), weight_k.size(1))
        pattern = _SPARSE_FEATURES.pattern(feats, forward=True)
        return csr_rows_add(out, feats.crow_indices(), pattern.col, feats.values(), weight_k, overwrite=True)
    if native.mostly_zero(feats, weight_k):
        out, keep["csr"] = native.nonzero_rows_matmul(feats, weight_k)
        return out
    return apply_weight(feats, weight_k).contiguous()


def _transform_weight_grad(feats: Tensor, grad_h: Tensor, weight_k: Tensor, kept: dict) -> Tensor:
    """Gradient of ``weight_k`` for ``h = _transform(feats, weight_k)`` given ``grad_h``: ``feats^T grad_h``."""
    if feats.is_sparse_csr:  # the CSR product over the transposed pattern (see _SparseFeatures)
        transposed = _SPARSE_FEATURES.pattern(feats).transposed
        values, order = _SPARSE_FEATURES.transposed_values(feats)
        return _aggregate(transposed, 0, transposed.num_pairs, values, grad_h, order=order)
    csr = kept.get("csr")  # the CSR form of feats, if the forward found feats mostly zero
    if csr is not None:
        return native.csr_weight_grad(csr, feats.size(1), grad_h)
    return _weight_grad(feats, grad_h, weight_k)


def _forward_graph(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], bias: Optional[Tensor],
                   rulebook: Rulebook, c_out: int, keep: dict) -> Tensor:
    """Forward over a rulebook with many pairs per output row: CSR products, sorted segment sums, plus ``bias``.
    ``keep`` receives what the backward reuses (the CSR form of mostly-zero features)."""
    if weight is not None and _fused(feats, weight[0], rulebook):
        return _fused_aggregate(rulebook, pair_scale, feats, weight[0], bias)
    out = None  # the first offset writes it (with the bias), the others add to it
    for k, s, e in rulebook.offset_slices():
        w = None if weight is None else weight[k]
        scale = _span(pair_scale, s, e)
        if w is None or _transform_first(w, feats):
            out = _aggregate(rulebook, s, e, scale, _transform(feats, w, keep), out=out, bias=bias)
        else:
            product = apply_weight(_aggregate(rulebook, s, e, scale, feats), w)
            if out is not None:
                out.add_(product)
            else:
                out = product.contiguous() if bias is None else product.add(bias)
    if out is None:  # no pairs at all
        out = feats.new_zeros(rulebook.num_out, c_out)
        return out if bias is None else out.add_(bias)
    return out


def _accumulate(total: Optional[Tensor], part: Tensor) -> Tensor:
    return part if total is None else total.add_(part)


def _backward_graph(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], rulebook: Rulebook,
                    grad_out: Tensor, needs: Tuple[bool, bool, bool], kept: dict):
    need_feats, need_weight, need_scale = needs
    grad_feats = None
    slices = rulebook.offset_slices()
    grad_weight = None
    if need_weight:  # in the weight's own layout (a layer's weight.t(): autograd then copies nothing)
        every_offset = len(slices) == rulebook.kernel_volume
        grad_weight = torch.empty_like(weight) if every_offset else torch.zeros_like(weight)
    grad_scale = torch.zeros_like(pair_scale) if need_scale else None
    # the adjoint aggregation A^T runs over the transposed rulebook, also sorted by output; its pair q carries
    # the scale of forward pair _pair_order(transposed, ...)[q], read in place
    transposed = rulebook.transpose()
    for k, s, e in slices:
        w = None if weight is None else weight[k]
        scale = _span(pair_scale, s, e)
        order_t = None if pair_scale is None else _pair_order(transposed, s, e)
        if need_feats and not need_scale and w is not None and w.dim() == 2 and _fused(grad_out, w.t(), transposed):
            # grad_feats = (A^T grad_out) w^T in one pass; A^T grad_out (the gradient of feats @ w) kept for w's
            grad_h = grad_out.new_empty(feats.size(0), grad_out.size(1)) if need_weight else None
            grad_feats = _accumulate(grad_feats, _fused_aggregate(transposed, pair_scale, grad_out, w.t(),
                                                                  order=order_t, side=grad_h))
            if need_weight:
                native.copy_rows_(grad_weight[k], _transform_weight_grad(feats, grad_h, w, kept))
        elif _transform_first(w, feats):
            grad_h = _aggregate(transposed, s, e, pair_scale, grad_out, order=order_t)
            if need_feats:
                grad_feats = _accumulate(grad_feats, _apply_weight_t(grad_h, w))
            if need_weight:
                native.copy_rows_(grad_weight[k], _transform_weight_grad(feats, grad_h, w, kept))
            if need_scale:
                grad_scale[s:e] = _rowdot(_transform(feats, w, {}).index_select(0, rulebook.in_idx[s:e]),
                                          grad_out.index_select(0, rulebook.out_idx[s:e]))
        else:
            grad_agg = _apply_weight_t(grad_out, w)
            if need_feats:
                grad_feats = _aggregate(transposed, s, e, pair_scale, grad_agg.contiguous(), out=grad_feats,
                                        order=order_t)
            if need_weight:
                grad_weight[k] = _weight_grad(_aggregate(rulebook, s, e, scale, feats), grad_out, w)
            if need_scale:
                grad_scale[s:e] = _rowdot(feats.index_select(0, rulebook.in_idx[s:e]),
                                          grad_agg.index_select(0, rulebook.out_idx[s:e]))
    if need_feats and grad_feats is None:
        grad_feats = torch.zeros_like(feats)
    return grad_feats, grad_weight, grad_scale


def _native_graph(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], rulebook: Rulebook,
                  scale_needs_grad: bool) -> bool:
    """Whether a graph call takes the prepared native path (:func:`_forward_native_graph`): one offset, an ungrouped
    weight, scales that need no gradient, float32 CPU throughout with the kernels loaded, and features that are
    sparse CSR, or dense and narrow enough for the one-pass kernel both ways. It runs the kernels the general path
    would, on operands prepared once per graph and checked once by ``gather_scatter``: a small graph layer's step
    then spends its time in the kernels, not in dispatching them (6% of a Cora training step)."""
    if weight is None or pair_scale is None or weight.dim() != 3 or weight.size(0) != 1 or scale_needs_grad:
        return False
    if not native.cpu_float32(weight, pair_scale):
        return False
    if feats.is_sparse_csr:
        return native.cpu_float32(feats)
    _, c_in, c_out = weight.shape
    return _one_pass(c_in, c_out) and _one_pass(c_out, c_in) and native.serves_rows(feats)


def _native_operands(rulebook: Rulebook) -> Tuple[native.CsrOperand, native.CsrOperand]:
    """``(pairs by output, transposed pairs by output reading the forward scales through their order)`` of a
    one-offset graph rulebook, prepared for the native kernels once and cached on it."""
    operands = rulebook._derived.get("native_operands")
    if operands is None:
        transposed = rulebook.transpose()
        every = (0, transposed.num_pairs)
        operands = rulebook._derived["native_operands"] = (
            native.CsrOperand(*_csr(rulebook, *every)),
            native.CsrOperand(*_csr(transposed, *every), _pair_order(transposed, *every)))
    return operands


def _forward_native_graph(feats: Tensor, weight: Tensor, pair_scale: Tensor, bias: Optional[Tensor],
                          rulebook: Rulebook) -> Tensor:
    """``bias + A (feats @ W)``: sparse features multiplied through their nonzeros, then aggregated; dense ones
    aggregated and transformed in one pass (see :func:`_native_graph`)."""
    forward, _ = _native_operands(rulebook)
    w, scale = native.kernel_rows(weight[0]), pair_scale.contiguous()
    bias = None if bias is None else bias.contiguous()
    if feats.is_sparse_csr:
        pattern = _SPARSE_FEATURES.pattern(feats, forward=True)
        values = feats.values().contiguous()
        h = native.csr_rows_prepared(pattern.forward, values.new_empty(feats.size(0), w.size(1)), values, w)
        return native.csr_rows_prepared(forward, h.new_empty(rulebook.num_out, w.size(1)), scale, h, bias)
    return native.csr_rows_prepared(forward, feats.new_empty(rulebook.num_out, w.size(1)), scale, feats, bias, w)


def _backward_native_graph(feats: Tensor, weight: Tensor, pair_scale: Tensor, rulebook: Rulebook, grad_out: Tensor,
                           needs: Tuple[bool, bool, bool]):
    """Gradients of :func:`_forward_native_graph` for ``feats`` and ``weight`` (``pair_scale`` needs none)."""
    need_feats, need_weight, _ = needs
    _, adjoint = _native_operands(rulebook)
    w, scale = weight[0], pair_scale.contiguous()
    grad_feats = grad_weight = None
    if need_feats:  # dense: (A^T grad_out) w^T in one pass, A^T grad_out kept for w's gradient
        grad_h = grad_out.new_empty(feats.size(0), w.size(1)) if need_weight else None
        grad_feats = native.csr_rows_prepared(adjoint, grad_out.new_empty(feats.shape), scale, grad_out, None,
                                              native.kernel_rows(w.t()), grad_h)
    elif need_weight:
        grad_h = native.csr_rows_prepared(adjoint, grad_out.new_empty(feats.size(0), w.size(1)), scale, grad_out)
    if need_weight:  # in the weight's own layout (a layer's weight.t(): autograd then copies nothing)
        transposed = native.is_transposed(w)
        if feats.is_sparse_csr:  # feats^T grad_h over the transposed pattern (see _SparseFeatures)
            pattern = _SPARSE_FEATURES.pattern(feats)
            values, order = _SPARSE_FEATURES.transposed_values(feats)
            operand = pattern.adjoint if order is not None else pattern.adjoint_in_order
            columns = transposed and w.size(1) <= native.MAX_FUSED_CHANNELS  # the kernel stores the sums as columns
            out = grad_h.new_empty(w.size(1), w.size(0)).t() if columns else grad_h.new_empty(w.shape)
            grad_w = native.csr_rows_prepared(operand, out, values, grad_h)
        elif transposed and native.serves_outer(feats, grad_h) and native.serves_outer(grad_h, feats):
            grad_w = native.rows_outer(grad_h, feats)[0].t()  # (grad_h^T feats)^T: the same products, same order
        else:
            grad_w = _weight_grad(feats, grad_h, w)
        if grad_w.stride() == w.stride():
            grad_weight = grad_w.unsqueeze(0)
        else:
            grad_weight = torch.empty_like(weight)
            native.copy_rows_(grad_weight[0], grad_w)
    return grad_feats, grad_weight, None


def _forward(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], bias: Optional[Tensor],
             rulebook: Rulebook, c_out: int, scale_needs_grad: bool) -> Tuple[Tensor, bool, dict]:
    """``(out, native_graph, kept)``: the forward over checked arguments, whether it took the prepared native graph
    path, and what it kept for the backward (the CSR form of mostly-zero features)."""
    kept = {}
    if rulebook.injective:
        out = _forward_pairs(feats, weight, pair_scale, rulebook, c_out)
        return (out if bias is None else out.add_(bias)), False, kept
    if _native_graph(feats, weight, pair_scale, rulebook, scale_needs_grad):
        return _forward_native_graph(feats, weight, pair_scale, bias, rulebook), True, kept
    return _forward_graph(feats, weight, pair_scale, bias, rulebook, c_out, kept), False, kept


def _backward(feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], rulebook: Rulebook,
              grad_out: Tensor, needs: Tuple[bool, bool, bool, bool], native_graph: bool, kept: dict):
    """``(grad_feats, grad_weight, grad_scale, grad_bias)`` for the ``needs`` mask (None where not needed), in the
    dtypes of the forward's arguments: autocast is off inside (a backward may run inside an autocast region)."""
    if torch.is_autocast_enabled(grad_out.device.type):
        with torch.autocast(grad_out.device.type, enabled=False):
            return _backward(feats, weight, pair_scale, rulebook, grad_out, needs, native_graph, kept)
    grad_out = grad_out.contiguous()
    if rulebook.injective:
        grads = _backward_pairs(feats, weight, pair_scale, rulebook, grad_out, needs[:3])
    elif native_graph:
        grads = _backward_native_graph(feats, weight, pair_scale, rulebook, grad_out, needs[:3])
    else:
        grads = _backward_graph(feats, weight, pair_scale, rulebook, grad_out, needs[:3], kept)
    return (*grads, _bias_grad(grad_out) if needs[3] else None)


class _GatherScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Optional[Tensor], pair_scale: Optional[Tensor], bias: Optional[Tensor],
                rulebook: Rulebook, c_out: int):
        ctx.rulebook = rulebook
        ctx.has_bias = bias is not None
        if feats.is_sparse_csr:  # never needs a gradient (checked): kept aside, not saved for autograd
            ctx.sparse_feats = feats
            ctx.save_for_backward(weight, pair_scale)
        else:
            ctx.sparse_feats = None
            ctx.save_for_backward(weight, pair_scale, feats)
        scale_needs_grad = pair_scale is not None and pair_scale.requires_grad
        out, ctx.native_graph, ctx.kept = _forward(feats, weight, pair_scale, bias, rulebook, c_out, scale_needs_grad)
        return out

    @staticmethod
    @differentiable_once
    def backward(ctx, grad_out: Tensor):
        weight, pair_scale, *dense = ctx.saved_tensors
        feats = ctx.sparse_feats if ctx.sparse_feats is not None else dense[0]
        needs = (*ctx.needs_input_grad[:3], ctx.has_bias and ctx.needs_input_grad[3])
        grads = _backward(feats, weight, pair_scale, ctx.rulebook, grad_out, needs, ctx.native_graph, ctx.kept)
        return (*grads, None, None)


def _check_sparse(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook) -> None:
    """Sparse features are served where their product is the kernel: a weighted graph rulebook."""
    if rulebook.injective or weight is None:
        raise TypeError(f"gather_scatter: sparse feats ({feats.layout}) need a graph rulebook (many pairs per output "
                        f"row) and a weight, which is multiplied through their nonzeros; this call has "
                        f"{'an injective (convolution)' if rulebook.injective else 'a graph'} rulebook and "
                        f"{'no' if weight is None else 'a'} weight: pass feats.to_dense()")
    if feats.requires_grad:
        raise ValueError("gather_scatter: sparse feats that require a gradient are not supported; use "
                         "irregconv.functional.sparse_matmul(feats, weight) (gradients for the stored values), "
                         "then aggregate its result")


def _check(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook, pair_scale: Optional[Tensor],
           bias: Optional[Tensor]) -> int:
    """``C_out`` after checking every argument (each attribute read once: this runs on every layer call)."""
    if not isinstance(rulebook, Rulebook):
        raise TypeError(f"gather_scatter: rulebook must be an irregconv.rulebook.Rulebook, got {type(rulebook).__name__}")
    if not isinstance(feats, Tensor) or feats.dim() != 2:
        raise ValueError(f"gather_scatter: feats must be a [N_in, C_in] tensor, got "
                         f"{list(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__}")
    dtype, device, (num_in, c_in) = feats.dtype, feats.device, feats.shape
    if not dtype.is_floating_point:
        raise TypeError(f"gather_scatter: feats must be floating point, got {dtype}")
    if num_in != rulebook.num_in:
        raise ValueError(f"gather_scatter: feats has {num_in} rows but the rulebook expects "
                         f"num_in = {rulebook.num_in}; pass the features of the sites the rulebook was built on")
    if device != rulebook.device:
        raise ValueError(f"gather_scatter: feats is on {device} but the rulebook on {rulebook.device}; "
                         f"move both to one device")
    if weight is None:
        c_out = c_in
    else:
        shape = weight.shape
        if len(shape) not in (3, 4) or shape[0] != rulebook.kernel_volume:
            raise ValueError(f"gather_scatter: weight must be [K, C_in, C_out] or [K, G, C_in/G, C_out/G] with "
                             f"K = {rulebook.kernel_volume}, got {list(shape)}")
        groups = 1 if len(shape) == 3 else shape[1]
        if shape[-2] * groups != c_in:
            raise ValueError(f"gather_scatter: weight {list(shape)} expects C_in = {shape[-2] * groups} "
                             f"input channels, but feats has {c_in}")
        if weight.dtype != dtype or weight.device != device:
            raise ValueError(f"gather_scatter: weight ({weight.dtype}, {weight.device}) must match feats "
                             f"({dtype}, {device})")
        c_out = shape[-1] * groups
    if pair_scale is not None:
        if pair_scale.shape != (rulebook.num_pairs,):
            raise ValueError(f"gather_scatter: pair_scale must have shape [P] = [{rulebook.num_pairs}], got "
                             f"{list(pair_scale.shape)}")
        if pair_scale.device != device:
            raise ValueError(f"gather_scatter: pair_scale is on {pair_scale.device}, feats on {device}")
    if bias is not None:
        if not isinstance(bias, Tensor) or bias.shape != (c_out,):
            raise ValueError(f"gather_scatter: bias must have shape [C_out] = [{c_out}], got "
                             f"{list(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__}")
        if bias.dtype != dtype or bias.device != device:
            raise ValueError(f"gather_scatter: bias ({bias.dtype}, {bias.device}) must match feats "
                             f"({dtype}, {device})")
    return c_out


#: floating point types the engine computes in float32 (rounding its inputs to them and its output back)
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _rounded_dtype(feats: Tensor) -> Optional[torch.dtype]:
    """The dtype a call computes in when that is not ``feats``' own float32/float64 path: autocast's (for float32 or
    half ``feats`` inside an autocast region of their device) or ``feats``' half dtype on the CPU; else None."""
    if not isinstance(feats, Tensor):
        return None
    dtype, device = feats.dtype, feats.device.type
    if torch.is_autocast_enabled(device) and dtype != torch.float64 and dtype.is_floating_point:
        return torch.get_autocast_dtype(device)
    return dtype if dtype in HALF_DTYPES and device == "cpu" else None


def _in_float32(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook, pair_scale: Optional[Tensor],
                bias: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """:func:`gather_scatter` computing in ``dtype`` as torch's convolutions do under autocast: ``feats``,
    ``weight`` and ``bias`` rounded to ``dtype``, products summed in float32 (the float32 kernels), the output
    rounded to ``dtype``; ``pair_scale`` in float32. Gradients flow through the casts."""
    with torch.autocast(feats.device.type, enabled=False):
        out = gather_scatter(_rounded(feats, dtype), _rounded(weight, dtype), rulebook,
                             None if pair_scale is None else pair_scale.float(), _rounded(bias, dtype))
    return out.to(dtype)


def _rounded(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """Floating point ``t`` rounded to ``dtype`` and widened to float32 (sparse ``t`` only widened)."""
    if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
        return t
    return (t if t.layout != torch.strided else t.to(dtype)).float()


def _kept_for_backward(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook) -> dict:
    """What :func:`_forward_graph` keeps for the backward, found again from its inputs: the CSR form of ``feats``
    when an offset multiplies them through their nonzeros (see :func:`_transform`)."""
    if weight is None or _fused(feats, weight[0], rulebook):
        return {}
    for k, _, _ in rulebook.offset_slices():
        if _transform_first(weight[k], feats) and native.mostly_zero(feats, weight[k]):
            return {"csr": native.nonzero_rows_matmul(feats, weight[k])[1]}
    return {}


def _checked_dense(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook, pair_scale: Optional[Tensor],
                   bias: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], int]:
    """``(feats, weight, C_out)`` checked, ``feats`` contiguous and a one-group weight squeezed to ``[K, C_in, C_out]``
    (dense features only: the operators take no sparse tensors)."""
    c_out = _check(feats, weight, rulebook, pair_scale, bias)
    if feats.layout != torch.strided:
        raise TypeError(f"torch.ops.irregconv.gather_scatter: feats must be a dense (strided) tensor, got "
                        f"{feats.layout}; call irregconv.engine.gather_scatter, which multiplies sparse features "
                        f"through their nonzeros")
    if weight is not None and weight.dim() == 4 and weight.size(1) == 1:
        weight = weight.squeeze(1)
    return feats.contiguous(), weight, c_out


def forward_kernel(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook, pair_scale: Optional[Tensor] = None,
                   bias: Optional[Tensor] = None) -> Tensor:
    """The CPU kernel of ``torch.ops.irregconv.gather_scatter``: :func:`gather_scatter`'s output, the same bits, with
    nothing recorded for autograd (the operator's own formula calls :func:`backward_kernel`). Half ``feats`` are
    summed in float32 as :func:`gather_scatter` sums them; autocast is the operator's own kernel, not read here.

    Shapes:
        as :func:`gather_scatter`; dense ``feats`` only.
    """
    if feats.dtype in HALF_DTYPES:
        dtype = feats.dtype
        return forward_kernel(_rounded(feats, dtype), _rounded(weight, dtype), rulebook,
                              None if pair_scale is None else pair_scale.float(), _rounded(bias, dtype)).to(dtype)
    feats, weight, c_out = _checked_dense(feats, weight, rulebook, pair_scale, bias)
    scale_needs_grad = pair_scale is not None and pair_scale.requires_grad
    with torch.no_grad(), torch.autocast(feats.device.type, enabled=False):
        return _forward(feats, weight, pair_scale, bias, rulebook, c_out, scale_needs_grad)[0]


def backward_kernel(grad_out: Tensor, feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook,
                    pair_scale: Optional[Tensor], needs: Tuple[bool, bool, bool, bool]):
    """``(grad_feats, grad_weight, grad_scale, grad_bias)`` of :func:`forward_kernel` for the ``needs`` mask (None where
    not needed): :func:`gather_scatter`'s gradients, the same bits. What its forward kept is found again from the
    inputs.

    Shapes:
        ``grad_out [N_out, C_out]`` -> ``[N_in, C_in]``, weight's shape, ``[P]``, ``[C_out]``.
    """
    if feats.dtype in HALF_DTYPES:
        dtype = feats.dtype
        grads = backward_kernel(grad_out.float(), _rounded(feats, dtype), _rounded(weight, dtype), rulebook,
                                None if pair_scale is None else pair_scale.float(), needs)
        return tuple(None if g is None else g.to(like.dtype)
                     for g, like in zip(grads, (feats, weight, pair_scale, feats)))
    feats, squeezed, _ = _checked_dense(feats, weight, rulebook, pair_scale, None)
    native_graph = not rulebook.injective and _native_graph(feats, squeezed, pair_scale, rulebook, needs[2])
    kept = {} if rulebook.injective or native_graph else _kept_for_backward(feats, squeezed, rulebook)
    with torch.no_grad():
        grads = _backward(feats, squeezed, pair_scale, rulebook, grad_out, needs, native_graph, kept)
    grad_weight = grads[1]
    if grad_weight is not None and squeezed is not weight:
        grad_weight = grad_weight.view(weight.shape)
    return grads[0], grad_weight, grads[2], grads[3]


def gather_scatter(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook,
                   pair_scale: Optional[Tensor] = None, bias: Optional[Tensor] = None) -> Tensor:
    """Gather -> per-offset compute -> scatter over ``rulebook``.

    .. math::
        \\mathbf{y}_o = \\mathbf{b} + \\sum_k \\sum_{(i, o) \\in R_k} s_{p} \\, \\mathbf{x}_i \\mathbf{W}_k

    Args:
        feats (Tensor): ``[N_in, C_in]`` floating point input rows; with a graph rulebook and a weight also a
            torch sparse tensor (COO/CSR/CSC; no gradient for its values), multiplied by the weight through its
            nonzeros (bag-of-words node features).
        weight (Tensor, optional): ``[K, C_in, C_out]``, or grouped ``[K, G, C_in/G, C_out/G]``
            (depthwise: ``G = C_in = C_out``); None for pure aggregation (``C_out = C_in``).
        rulebook (Rulebook): pairs grouped by offset (see :mod:`irregconv.rulebook.rulebook`).
        pair_scale (Tensor, optional): ``[P]`` per-pair scale in rulebook order (edge weights,
            normalisation).
        bias (Tensor, optional): ``[C_out]`` added to every output row (in the same autograd node).

    Returns:
        Tensor: ``[N_out, C_out]`` of ``feats``' dtype, or of autocast's inside an autocast region (float16 and
        bfloat16 are summed in float32). Empty rulebooks give zeros; ``N_in = 0`` is fine.

    Example:
        >>> import torch
        >>> from irregconv.rulebook import build_graph_rulebook
        >>> rb = build_graph_rulebook(torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
        >>> gather_scatter(torch.tensor([[1.], [2.]]), None, rb)
        tensor([[2.],
                [1.]])
    """
    if _traced(feats):
        return _operator(feats, weight, rulebook, pair_scale, bias)
    compute_dtype = _rounded_dtype(feats)
    if compute_dtype is not None:
        return _in_float32(feats, weight, rulebook, pair_scale, bias, compute_dtype)
    c_out = _check(feats, weight, rulebook, pair_scale, bias)
    if feats.layout != torch.strided:
        _check_sparse(feats, weight, rulebook)
        if not feats.is_sparse_csr:
            feats = feats.to_sparse_csr()  # an uncoalesced COO tensor's duplicates are summed, as in its product
    elif not feats.is_contiguous():
        feats = feats.contiguous()
    if weight is not None and weight.dim() == 4 and weight.size(1) == 1:
        weight = weight.squeeze(1)
    return _GatherScatter.apply(feats, weight, pair_scale, bias, rulebook, c_out)


def _traced(feats: Tensor) -> bool:
    """Whether this call is being traced (``torch.compile``, ``torch.export``, fake or functional tensors): then it
    goes through ``torch.ops.irregconv.gather_scatter``, which tracing can see; eager calls run the engine directly
    (see :mod:`irregconv.ops` for the measured cost of the dispatcher)."""
    return (torch.compiler.is_compiling() or type(feats) not in (Tensor, torch.nn.Parameter)) and \
        isinstance(feats, Tensor) and feats.layout == torch.strided


def _operator(feats: Tensor, weight: Optional[Tensor], rulebook: Rulebook, pair_scale: Optional[Tensor],
              bias: Optional[Tensor]) -> Tensor:
    """:func:`gather_scatter` through ``torch.ops.irregconv.gather_scatter``: the rulebook passed as its tensors."""
    if not isinstance(rulebook, Rulebook):
        raise TypeError(f"gather_scatter: rulebook must be an irregconv.rulebook.Rulebook, got {type(rulebook).__name__}")
    return torch.ops.irregconv.gather_scatter(feats, weight, rulebook.in_idx, rulebook.out_idx, rulebook.offset_ptr,
                                              rulebook.num_out, pair_scale, bias, rulebook.injective,
                                              rulebook.identity_offset, rulebook._derived.get("mirror"))
