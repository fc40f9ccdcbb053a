"""Graph convolution on the engine: input formats, self-loops, GCN normalisation, propagation.

A graph is a one-offset rulebook: sources are input rows, targets output rows, pairs sorted by target
(:func:`irregconv.rulebook.build_graph_rulebook`). Edge weights and the GCN normalisation
:math:`e_{ji} / \\sqrt{\\hat d_j \\hat d_i}` are per-pair scales, and every layer aggregates with
:func:`irregconv.engine.gather_scatter` (or :func:`irregconv.engine.aggregate` for max/min).

Sparse node features use the same engine: a layer hands a torch-sparse ``X [N, C_in]`` to
:func:`~irregconv.engine.gather_scatter` itself, which multiplies it by ``W`` through its nonzeros and
aggregates in one autograd node, so a bag-of-words first layer costs one pass over its nonzeros, forward and
backward. Where the stored values need gradients, ``X @ W`` runs as :func:`sparse_matmul`: a one-offset
rulebook from feature column to node (one pair per nonzero, the value as pair scale) applied to the rows
of ``W``.

Conventions (as PyG): ``edge_index [2, E]`` has row 0 source, row 1 target; a sparse adjacency is
``A[target, source]`` (PyG's ``adj_t``), so a layer computes ``A @ X``; its values are edge weights.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine import aggregate, gather_scatter
from ..rulebook import Rulebook, build_graph_rulebook
from ..rulebook.cache import IdentityCache
from ..rulebook.rulebook import rows_from_pointer

SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc)
REDUCTIONS = ("sum", "add", "mean", "max", "min")


def is_sparse(x) -> bool:
    """True for a torch sparse tensor of layout COO, CSR or CSC."""
    return isinstance(x, Tensor) and x.layout in SPARSE_LAYOUTS


# ---------------------------------------------------------------------------------------------- inputs

def adjacency_to_edge_index(adj: Tensor, owner: str = "adjacency_to_edge_index") -> Tuple[Tensor, Tensor]:
    """Edges of a torch sparse adjacency ``A[target, source]`` (COO, CSR or CSC).

    Args:
        adj (Tensor): ``[N_out, N_in]`` sparse; ``A[i, j] != 0`` is an edge ``j -> i`` of weight ``A[i, j]``.

    Returns:
        ``(edge_index [2, E], edge_weight [E])``, row 0 source, row 1 target; duplicates of an uncoalesced
        COO tensor stay separate edges (they add up in every sum aggregation).
    """
    if not is_sparse(adj) or adj.dim() != 2:
        raise TypeError(f"{owner}: the adjacency must be a 2-D torch sparse tensor (COO, CSR or CSC) "
                        f"A[target, source], got {_describe(adj)}")
    if adj.layout == torch.sparse_coo:
        indices, values = coo_parts(adj)
        return indices.flip(0), values
    if adj.layout == torch.sparse_csc:
        adj = adj.to_sparse_csr()
    return torch.stack([adj.col_indices(), rows_from_pointer(adj.crow_indices())]), adj.values()


def coo_parts(x: Tensor) -> Tuple[Tensor, Tensor]:
    """``(indices [2, nnz], values [nnz])`` of a COO tensor without coalescing it, unless its values need
    gradients (only a coalesced tensor's ``values()`` is differentiable)."""
    if x.requires_grad and not x.is_coalesced():
        x = x.coalesce()
    return (x.indices(), x.values()) if x.is_coalesced() else (x._indices(), x._values())


def plain_tensor(tensor):
    """``tensor`` as a plain ``torch.Tensor`` (same data and autograd graph); other values unchanged.

    PyG's ``EdgeIndex`` and ``Index`` are wrapper subclasses whose own ``data_ptr()`` is 0 (their data
    lives in ``as_tensor()``), and every tensor derived from them is one too, so index tensors are made
    plain before they reach the rulebook builders or a native kernel.
    """
    if type(tensor) is Tensor or not isinstance(tensor, Tensor):
        return tensor
    as_tensor = getattr(tensor, "as_tensor", None)  # PyG's EdgeIndex / Index
    return as_tensor() if callable(as_tensor) else tensor.as_subclass(Tensor)


def _graph_size(owner: str, size, edge_index) -> Tuple[Optional[int], Optional[int]]:
    """``(N_src, N_dst)`` from ``size``, else from a sparse adjacency's shape or an ``EdgeIndex``'s sparse size."""
    if size is None:
        if edge_index.layout in SPARSE_LAYOUTS:
            return edge_index.size(1), edge_index.size(0)
        if type(edge_index) is Tensor:
            return None, None
        sparse_size = getattr(edge_index, "sparse_size", None)  # PyG's EdgeIndex
        return tuple(sparse_size()) if callable(sparse_size) else (None, None)
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0) for s in size)):
        raise ValueError(f"{owner}: size must be None or a pair (N_src, N_dst) of node counts (int or None), "
                         f"got {size!r}")
    if edge_index.layout in SPARSE_LAYOUTS and tuple(size) != (edge_index.size(1), edge_index.size(0)):
        raise ValueError(f"{owner}: size = {tuple(size)} disagrees with the sparse adjacency A[target, source] "
                         f"of shape {list(edge_index.shape)}; pass size=None")
    return tuple(size)


def unpack_graph_inputs(x, edge_index, edge_weight: Optional[Tensor], owner: str, size=None):
    """Normalise a layer's ``(x, edge_index, edge_weight, size)`` to features, an edge list and node counts.

    Accepts ``edge_index [2, E]`` (a tensor or PyG's ``EdgeIndex``, made plain), a torch sparse adjacency
    ``A[target, source]`` (its values become the edge weights, its shape the size), or a PyG ``Data``
    passed as ``x`` (its ``x``, ``edge_index`` and ``edge_weight``).

    Returns:
        ``(x, edge_index [2, E], edge_weight [E] or None, (N_src, N_dst))``, the counts None where unknown.
    """
    if not isinstance(x, (Tensor, tuple, list)) and (hasattr(x, "edge_index") or hasattr(x, "adj_t")):
        from ..compat.pyg import from_pyg_data  # deferred: compat.pyg imports this module
        if edge_index is not None:
            raise ValueError(f"{owner}: got a PyG Data object and an edge_index; pass one or the other")
        x, edge_index, data_weight = from_pyg_data(x)
        edge_weight = data_weight if edge_weight is None else edge_weight
    if not isinstance(edge_index, Tensor):
        hint = (" (torch_sparse's SparseTensor is not supported: pass adj_t.to_torch_sparse_csr_tensor())"
                if type(edge_index).__name__ == "SparseTensor" else "")
        raise TypeError(f"{owner}: edge_index must be a [2, E] int64 tensor, a PyG EdgeIndex or a torch sparse "
                        f"adjacency, got {_describe(edge_index)}{hint}")
    size = _graph_size(owner, size, edge_index)
    edge_index, edge_weight = plain_tensor(edge_index), plain_tensor(edge_weight)
    if edge_index.layout in SPARSE_LAYOUTS:
        if edge_weight is not None:
            raise ValueError(f"{owner}: edge_weight was given with a sparse adjacency; the adjacency's values "
                             f"are the edge weights, so pass one or the other")
        edge_index, edge_weight = adjacency_to_edge_index(edge_index, owner)
    # shape, dtype and devices are checked here, before self-loops or degrees touch the edges (each attribute read
    # once: this runs on every layer call)
    shape, device = edge_index.shape, edge_index.device
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{owner}: edge_index must be int64 (or int32), got {edge_index.dtype}")
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"{owner}: edge_index must have shape [2, E] (row 0 source, row 1 target), got {list(shape)}")
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor):
            raise TypeError(f"{owner}: edge_weight must be a tensor [E], got {_describe(edge_weight)}")
        if edge_weight.shape != shape[1:]:
            raise ValueError(f"{owner}: edge_weight must have shape [E] = [{shape[1]}], got {list(edge_weight.shape)}")
        _check_device(owner, "edge_weight", edge_weight, device)
    for features in x if isinstance(x, (tuple, list)) else (x,):
        if isinstance(features, Tensor):
            _check_device(owner, "x", features, device)
    return x, edge_index, edge_weight, size


def _check_device(owner: str, name: str, tensor: Tensor, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(f"{owner}: {name} is on {tensor.device} but edge_index on {device}; "
                         f"put them on one device (e.g. edge_index.to({str(tensor.device)!r}))")


def _describe(obj) -> str:
    if isinstance(obj, Tensor):
        return f"a {obj.layout} tensor of shape {list(obj.shape)} and dtype {obj.dtype}"
    return type(obj).__name__


def _num_nodes(edge_index: Tensor, num_nodes: Optional[int]) -> int:
    if num_nodes is not None:
        return int(num_nodes)
    return int(edge_index.max()) + 1 if edge_index.numel() else 0


# ------------------------------------------------------------------------------------ self-loops, norm

def add_self_loops(edge_index: Tensor, edge_weight: Optional[Tensor] = None, fill_value: float = 1.0,
                   num_nodes: Optional[int] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Append an edge ``i -> i`` of weight ``fill_value`` for every node, keeping existing loops.

    Returns:
        ``(edge_index [2, E + N], edge_weight [E + N] or None)``.
    """
    n = _num_nodes(edge_index, num_nodes)
    loops = torch.arange(n, device=edge_index.device).expand(2, n)
    if edge_weight is not None:
        edge_weight = torch.cat([edge_weight, edge_weight.new_full((n,), fill_value)])
    return torch.cat([edge_index, loops], dim=1), edge_weight


def add_remaining_self_loops(edge_index: Tensor, edge_weight: Optional[Tensor] = None, fill_value: float = 1.0,
                             num_nodes: Optional[int] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Give every node exactly one self-loop: existing loops keep their weight (the last one when a node
    has several), the others get ``fill_value``. Loops are moved to the end, one per node in node order.

    Returns:
        ``(edge_index [2, E' + N], edge_weight [E' + N] or None)`` with ``E'`` the non-loop edges.
    """
    n = _num_nodes(edge_index, num_nodes)
    is_loop = edge_index[0] == edge_index[1]
    loops = torch.arange(n, device=edge_index.device).expand(2, n)
    if edge_weight is not None:
        loop_weight = edge_weight.new_full((n,), fill_value)
        loop_pos = is_loop.nonzero().squeeze(1)
        if loop_pos.numel():
            # the last loop of each node wins, decided by position so that the result is deterministic
            node = edge_index[0, loop_pos]
            last = torch.full((n,), -1, dtype=torch.long, device=edge_index.device)
            last = last.scatter_reduce(0, node, loop_pos, reduce="amax")
            has_loop = last >= 0
            loop_weight = torch.where(has_loop, edge_weight[last.clamp(min=0)], loop_weight)
        edge_weight = torch.cat([edge_weight[~is_loop], loop_weight])
    return torch.cat([edge_index[:, ~is_loop], loops], dim=1), edge_weight


def build_gcn_rulebook(edge_index: Tensor, edge_weight: Optional[Tensor] = None, num_nodes: Optional[int] = None,
                       improved: bool = False, add_self_loops: bool = True, normalize: bool = True,
                       dtype: torch.dtype = torch.float32) -> Tuple[Rulebook, Optional[Tensor]]:
    """The GCN propagation as a rulebook and a per-pair scale.

    With ``normalize``: the scale of pair ``j -> i`` is :math:`e_{ji} / \\sqrt{\\hat d_j \\hat d_i}` with
    :math:`\\hat d_i = \\sum_j e_{ji}` over the edges into ``i`` after adding the remaining self-loops of
    weight 1 (2 if ``improved``, i.e. :math:`\\hat A = A + 2I`). Missing edge weights are ones, so
    ``improved`` holds with and without ``edge_weight`` (PyG 2.8's ``gcn_norm`` ignores ``improved``
    when ``edge_weight`` is None; pass ``torch.ones(E)`` to PyG to compare). Degrees are sorted segment
    sums over the rulebook: deterministic. Without ``normalize`` the scale is ``edge_weight`` as given.

    Args:
        edge_index (Tensor): ``[2, E]`` int64, row 0 source, row 1 target.
        edge_weight (Tensor, optional): ``[E]`` (default: ones).
        num_nodes (int, optional): ``N`` (default: ``edge_index.max() + 1``).
        improved (bool): self-loops of weight 2 (default: ``False``).
        add_self_loops (bool): add the remaining self-loops (default: ``True``).
        normalize (bool): symmetric normalisation (default: ``True``).
        dtype (torch.dtype): dtype of the scale (default: float32).

    Returns:
        ``(rulebook, pair_scale [P] or None)``, the scale in rulebook pair order.
    """
    n = _num_nodes(edge_index, num_nodes)
    if not normalize:
        rulebook = build_graph_rulebook(edge_index, n)
        return rulebook, None if edge_weight is None else edge_weight.to(dtype).index_select(0, rulebook.pair_ids)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    edge_weight = edge_weight.to(dtype)
    if add_self_loops:
        edge_index, edge_weight = add_remaining_self_loops(edge_index, edge_weight, 2.0 if improved else 1.0, n)
    rulebook = build_graph_rulebook(edge_index, n)
    weight = edge_weight.index_select(0, rulebook.pair_ids)
    degree = aggregate(weight.unsqueeze(1), rulebook, "sum").squeeze(1)
    deg_inv_sqrt = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    return rulebook, deg_inv_sqrt[rulebook.in_idx] * weight * deg_inv_sqrt[rulebook.out_idx]


def gcn_norm(edge_index, edge_weight: Optional[Tensor] = None, num_nodes: Optional[int] = None,
             improved: bool = False, add_self_loops: bool = True,
             dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor]:
    """Symmetric GCN normalisation :math:`\\hat D^{-1/2} \\hat A \\hat D^{-1/2}` as an edge list.

    Same arguments as :func:`build_gcn_rulebook` (``edge_index`` may also be a sparse adjacency
    ``A[target, source]``, whose values are the weights).

    Returns:
        ``(edge_index [2, P], edge_weight [P])`` with self-loops, sorted by target. Differentiable with
        respect to ``edge_weight``.

    Example:
        >>> ei, w = gcn_norm(torch.tensor([[0, 1], [1, 0]]))
        >>> w
        tensor([0.5000, 0.5000, 0.5000, 0.5000])
    """
    _, edge_index, edge_weight, _ = unpack_graph_inputs(None, edge_index, edge_weight, "gcn_norm")
    rulebook, scale = build_gcn_rulebook(edge_index, edge_weight, num_nodes, improved, add_self_loops, True, dtype)
    return torch.stack([rulebook.in_idx, rulebook.out_idx]), scale


def mean_scale(rulebook: Rulebook, pair_scale: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    """Per-pair scale turning a sum into a mean over each target's incoming pairs."""
    count = torch.bincount(rulebook.out_idx, minlength=rulebook.num_out).clamp(min=1)
    inv = (1.0 / count.to(dtype))[rulebook.out_idx]
    return inv if pair_scale is None else pair_scale * inv


# ------------------------------------------------------------------------------------ sparse features

def _pattern_tensors(x: Tensor) -> Tuple[Tensor, ...]:
    """The index tensors that define a sparse tensor's pattern (the key of its feature rulebook)."""
    if x.layout == torch.sparse_coo:
        return (coo_parts(x)[0],)
    if x.layout == torch.sparse_csr:
        return (x.crow_indices(), x.col_indices())
    raise TypeError(f"sparse features must be COO or CSR, got {x.layout}; convert with x.to_sparse_csr()")


def _pattern_values(x: Tensor) -> Tensor:
    return coo_parts(x)[1] if x.layout == torch.sparse_coo else x.values()


def feature_rulebook(x: Tensor) -> Tuple[Rulebook, bool]:
    """One-offset rulebook of a sparse ``x [N, C]``: pair ``column -> row`` per stored value, so that
    ``gather_scatter(W, None, rb, values[rb.pair_ids]) == x @ W``.

    Returns:
        ``(rulebook, in_order)``; ``in_order`` when the stored values already are in pair order (a
        canonical CSR tensor), so the per-call gather of the values can be skipped.
    """
    x = x.to_sparse_csr() if x.layout == torch.sparse_csc else x
    edges, _ = adjacency_to_edge_index(x)
    rulebook = build_graph_rulebook(edges, x.size(1), x.size(0))
    in_order = bool(torch.equal(rulebook.pair_ids, torch.arange(rulebook.num_pairs, device=rulebook.device)))
    return rulebook, in_order


def sparse_matmul(x: Tensor, weight: Tensor, cache: Optional[IdentityCache] = None) -> Tensor:
    """``x @ weight`` for torch-sparse ``x [N, C_in]`` and dense ``weight [C_in, C_out]`` on the engine.

    Deterministic, with gradients for ``weight`` and for ``x``'s values. ``cache`` reuses the rulebook
    of an unchanged sparsity pattern (otherwise it is built on every call).
    """
    if x.layout == torch.sparse_csc:
        x = x.to_sparse_csr()
    if cache is None:
        rulebook, in_order = feature_rulebook(x)
    else:
        rulebook, in_order = cache.get_or_build(_pattern_tensors(x), (x.layout, tuple(x.shape)),
                                                lambda: feature_rulebook(x))
    values = _pattern_values(x).to(weight.dtype)
    if not in_order:
        values = values.index_select(0, rulebook.pair_ids)
    return gather_scatter(weight, None, rulebook, values)


def linear(x: Tensor, weight: Tensor, cache: Optional[IdentityCache] = None) -> Tensor:
    """``x @ weight`` for dense ``x [*, N, C_in]`` or torch-sparse ``x [N, C_in]`` (via :func:`sparse_matmul`)."""
    return sparse_matmul(x, weight, cache) if is_sparse(x) else x @ weight


def sparse_dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Dropout over the stored values of a sparse ``x`` (dense ``x``: ``F.dropout``).

    Zeros stay zeros either way, so this draws one random number per nonzero instead of one per entry
    (50x fewer on Cora's features), and keeps the sparsity pattern: layers reuse its rulebook.
    """
    if not is_sparse(x):
        return F.dropout(x, p, training)
    if not training or p == 0.0:
        return x
    if x.layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(x._indices(), F.dropout(x._values(), p, True), x.shape,
                                       is_coalesced=x.is_coalesced(), check_invariants=False)
    if x.layout == torch.sparse_csr:
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), F.dropout(x.values(), p, True),
                                       x.shape, check_invariants=False)
    raise TypeError(f"sparse_dropout: x must be dense, COO or CSR, got {x.layout}")


# -------------------------------------------------------------------------------------------- propagate

def propagate(x: Tensor, rulebook: Rulebook, pair_scale: Optional[Tensor] = None, weight: Optional[Tensor] = None,
              reduce: str = "sum", cache: Optional[IdentityCache] = None, bias: Optional[Tensor] = None) -> Tensor:
    """Aggregate (and transform) node features over a graph rulebook on the engine.

    .. math::
        \\mathbf{y}_i = \\mathbf{b} + \\bigoplus_{(j, i)} s_{ji} \\, \\mathbf{x}_j \\, \\mathbf{W}

    Sums and means go through :func:`irregconv.engine.gather_scatter` with the weight and the bias (one
    autograd node), which picks the cheaper order itself (transform first when ``C_out <= C_in``) and
    multiplies sparse features through their nonzeros; max/min gather the messages and reduce them with
    :func:`irregconv.engine.aggregate`, then transform.

    Args:
        x (Tensor): ``[N_in, C_in]`` dense or torch sparse (COO/CSR/CSC), or dense ``[*, N_in, C_in]``
            (one graph shared by a batch).
        rulebook (Rulebook): graph rulebook (:func:`irregconv.rulebook.build_graph_rulebook`).
        pair_scale (Tensor, optional): ``[P]`` per-pair scale in rulebook order.
        weight (Tensor, optional): ``[C_in, C_out]``.
        reduce (str): ``"sum"`` (``"add"``), ``"mean"``, ``"max"`` or ``"min"`` (default: ``"sum"``).
        cache (IdentityCache, optional): reuses the rulebook of an unchanged sparsity pattern when sparse ``x``
            needs gradients for its values (then its product runs as :func:`sparse_matmul`).
        bias (Tensor, optional): ``[C_out]`` added to every output row.

    Shapes:
        ``x [N_in, C_in]`` -> ``[N_out, C_out]`` (``C_out = C_in`` without ``weight``).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"propagate: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if reduce == "mean":
        pair_scale = mean_scale(rulebook, pair_scale, weight.dtype if weight is not None else x.dtype)
    linear = reduce in ("sum", "add", "mean")
    if x.layout != torch.strided:  # sparse; else the engine multiplies x through its nonzeros
        if weight is None or not linear:
            x = x.to_dense()
        elif x.requires_grad:
            x, weight = sparse_matmul(x, weight, cache), None
    lead = x.shape[:-2]  # (none for a sparse x: it is [N, C])
    if lead:
        if weight is not None:
            x, weight = x @ weight, None
        x = x.movedim(-2, 0).reshape(x.size(-2), -1)
    if pair_scale is not None and pair_scale.dtype != x.dtype:
        pair_scale = pair_scale.to(x.dtype)
    if linear:
        out = gather_scatter(x, None if weight is None else weight.unsqueeze(0), rulebook, pair_scale,
                             None if lead else bias)
        if not lead:
            return out
    else:
        messages = x.index_select(0, rulebook.in_idx)
        if pair_scale is not None:
            messages = messages * pair_scale.unsqueeze(1)
        out = aggregate(messages, rulebook, reduce)
        if weight is not None:
            out = out @ weight
    if lead:
        out = out.reshape(out.size(0), *lead, -1).movedim(0, -2)
    return out if bias is None else out + bias
