"""GCNConv: "Semi-Supervised Classification with Graph Convolutional Networks" (Kipf & Welling,
arXiv:1609.02907).

Gather -> compute -> scatter: the rulebook is the edge list plus one self-loop per node (one kernel
offset, pairs sorted by target); the symmetric normalisation :math:`1 / \\sqrt{\\hat d_j \\hat d_i}` times
the edge weight is the per-pair scale; the engine multiplies by :math:`\\Theta` on whichever side of
the aggregation is cheaper and sums each target's pairs in a fixed order (deterministic). Sparse node
features go through the engine as a feature -> node rulebook (see :mod:`irregconv.functional.graph`).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ...functional.graph import build_gcn_rulebook, propagate, unpack_graph_inputs
from ...rulebook.cache import IdentityCache
from ._common import GraphLayer, check_channels, check_features, in_width, is_lazy, make_linear, materialize

#: the last normalised graph any GCNConv built (one entry: holds at most one graph alive)
_SHARED_GRAPHS = IdentityCache()

FLOWS = ("source_to_target", "target_to_source")


def check_flow(owner: str, flow: str) -> None:
    if flow not in FLOWS:
        raise ValueError(f"{owner}: flow must be one of {FLOWS}, got {flow!r}")


class GCNConv(GraphLayer):
    """Graph convolution with symmetric normalisation, drop-in for PyG's ``GCNConv``.

    .. math::
        \\mathbf{X}' = \\hat{D}^{-1/2} \\hat{A} \\hat{D}^{-1/2} \\mathbf{X} \\Theta^\\top + \\mathbf{b},
        \\qquad \\hat{A} = A + I \\ (A + 2I \\text{ if improved}), \\ \\hat{D}_{ii} = \\sum_j \\hat{A}_{ij}

    Parameter names and shapes are PyG's, so a PyG ``GCNConv`` state dict loads unchanged. One
    difference: ``improved=True`` also applies without edge weights (PyG 2.8 ignores it then).

    As in PyG, ``cached=True`` stores the normalised graph of the first call in ``_cached_edge_index``
    (``(rulebook, pair_scale)`` here) and reuses it for every later input; assigning None to
    ``_cached_edge_index`` (or to ``_cached_adj_t``, PyG's name for the cache of an adjacency input: both
    name the one cache here) or calling ``reset_parameters()`` drops it.

    Args:
        in_channels (int): ``C_in``, or -1 to infer it from the first input (lazy, as in PyG).
        out_channels (int): ``C_out``.
        improved (bool): self-loops of weight 2 (default: ``False``).
        cached (bool): keep the normalised rulebook of the first call and reuse it for every later
            input, as PyG does (transductive learning on one graph; default: ``False``; only with
            ``normalize``, as in PyG). Without it the
            rulebook is still reused while ``edge_index`` and ``edge_weight`` are the same unmodified
            tensors, and rebuilt when they change; the layers of a model share the last one built, so a
            new graph is normalised once per step, not once per layer.
        add_self_loops (bool, optional): add the remaining self-loops; None means ``normalize``
            (default: None). Self-loops without normalisation are refused, as in PyG.
        normalize (bool): symmetric normalisation (default: ``True``); without it the edge weights are
            used as given.
        bias (bool): learn an additive bias (default: ``True``).
        flow (str): ``"source_to_target"`` (row 0 of ``edge_index`` is the source) or
            ``"target_to_source"`` (default: ``"source_to_target"``).

    Shapes:
        - ``x``: ``[N, C_in]`` dense or torch sparse (COO/CSR/CSC), or dense ``[*, N, C_in]``; or a PyG
          ``Data`` (then no ``edge_index``).
        - ``edge_index``: ``[2, E]`` int64, or a torch sparse adjacency ``A[target, source]`` ``[N, N]``
          whose values are the edge weights.
        - ``edge_weight``: ``[E]`` (optional).
        - output: ``[N, C_out]`` (``[*, N, C_out]``).

    Attributes:
        lin.weight (Tensor): ``[C_out, C_in]``, Glorot-uniform initialised.
        bias (Tensor): ``[C_out]``, zeros.

    Example:
        >>> conv = GCNConv(16, 32)
        >>> conv(torch.randn(4, 16), torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])).shape
        torch.Size([4, 32])
    """

    def __init__(self, in_channels: int, out_channels: int, improved: bool = False, cached: bool = False,
                 add_self_loops: Optional[bool] = None, normalize: bool = True, bias: bool = True,
                 flow: str = "source_to_target"):
        super().__init__()
        check_channels("GCNConv", in_channels, out_channels, bipartite=False)
        check_flow("GCNConv", flow)
        if add_self_loops is None:
            add_self_loops = normalize
        if add_self_loops and not normalize:
            raise ValueError("GCNConv does not support adding self-loops to the graph when no on-the-fly "
                             "normalization is applied (add_self_loops=True, normalize=False); add them to "
                             "edge_index yourself or pass add_self_loops=False")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.improved = improved
        self.cached = cached
        self.add_self_loops = add_self_loops
        self.normalize = normalize
        self.flow = flow
        self.lin = make_linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._cached_graph = None
        self._graph_cache = IdentityCache()
        self._feature_cache = IdentityCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not is_lazy(self.lin):  # a lazy weight gets this init when materialize() gives it a width
            nn.init.xavier_uniform_(self.lin.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self._cached_graph = None

    def _reset_cache(self, value) -> None:
        if value is not None:
            raise ValueError(f"GCNConv: the graph cache can only be reset (assigned None), got {type(value).__name__}; "
                             f"it fills itself at the next call when cached=True")
        self._cached_graph = None

    #: PyG's names of its two caches (edge lists, torch_sparse adjacencies): here both name the one
    #: ``cached=True`` entry ``(rulebook, pair_scale)``; assigning None to either drops it
    _cached_edge_index = _cached_adj_t = property(lambda self: self._cached_graph, _reset_cache)

    def forward(self, x, edge_index=None, edge_weight: Optional[Tensor] = None) -> Tensor:
        if isinstance(x, (tuple, list)):
            raise ValueError("GCNConv received a tuple of node features as input while this layer does not "
                             "support bipartite message passing; use SAGEConv or GraphConv instead")
        x, edge_index, edge_weight, size = unpack_graph_inputs(x, edge_index, edge_weight, "GCNConv")
        materialize(self.lin, x, nn.init.xavier_uniform_)
        check_features("GCNConv", x, in_width(self.lin))
        num_nodes = x.size(-2)
        if size[0] not in (None, num_nodes) or size[1] not in (None, num_nodes):
            raise ValueError(f"GCNConv: the graph has {size} (source, target) nodes but x has {num_nodes} rows; "
                             f"GCNConv needs one node set (use SAGEConv or GraphConv for bipartite graphs)")
        rulebook, pair_scale = self._normalized_graph(edge_index, edge_weight, num_nodes, x.dtype)
        return propagate(x, rulebook, pair_scale, self.lin.weight.t(), cache=self._feature_cache, bias=self.bias)

    def _normalized_graph(self, edge_index: Tensor, edge_weight: Optional[Tensor], num_nodes: int, dtype):
        """``(rulebook, pair_scale)``: the ``cached=True`` entry, else rebuilt unless ``edge_index`` and
        ``edge_weight`` are the same unmodified tensors as last time (see ``IdentityCache``)."""
        if self._cached_graph is not None and self.normalize:
            return self._cached_graph
        check_flow("GCNConv", self.flow)

        def build():
            edges = edge_index.flip(0) if self.flow == "target_to_source" else edge_index
            return build_gcn_rulebook(edges, edge_weight, num_nodes, self.improved, self.add_self_loops,
                                      self.normalize, dtype)

        if edge_weight is not None and edge_weight.requires_grad:
            result = build()  # the scale holds a graph back to edge_weight: one backward pass only
        else:
            options = (num_nodes, self.improved, self.add_self_loops, self.normalize, self.flow, dtype)
            key = (edge_index, edge_weight)
            # a miss asks the cache shared by all GCNConv layers before building: the layers of one model
            # called with a new edge_index normalise it once, not once each (and share its transpose)
            result = self._graph_cache.get_or_build(
                key, options, lambda: _SHARED_GRAPHS.get_or_build(key, options, build))
        if self.cached and self.normalize:
            self._cached_graph = result
        return result
