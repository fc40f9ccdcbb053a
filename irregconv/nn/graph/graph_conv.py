"""GraphConv: "Weisfeiler and Leman Go Neural: Higher-order Graph Neural Networks" (Morris et al.,
arXiv:1810.02244).

Gather -> compute -> scatter: the rulebook is the edge list (one offset), the edge weight the per-pair
scale; the neighbour sum times :math:`\\Theta_1` is one engine call (the engine picks the order of
transform and aggregation), the root term :math:`\\Theta_2 \\mathbf{x}_i` a plain matmul.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from ...functional.graph import linear
from ...rulebook.cache import IdentityCache
from ._common import (Aggr, Channels, GraphLayer, aggregate_neighbours, check_channels, graph_pair_inputs, in_width,
                      make_linear, materialize, pair_channels, resolve_aggregation)


class GraphConv(GraphLayer):
    """Graph convolution of Morris et al., drop-in for PyG's ``GraphConv``.

    .. math::
        \\mathbf{x}'_i = \\Theta_1 \\bigoplus_{j \\in \\mathcal{N}(i)} e_{ji} \\mathbf{x}_j + \\Theta_2 \\mathbf{x}_i

    Args:
        in_channels (int or tuple): ``C_in``, or ``(C_src, C_dst)`` for bipartite graphs; -1 infers a width
            from the first input (lazy, as in PyG).
        out_channels (int): ``C_out``.
        aggr (str, list or Aggregation): ``"add"``, ``"mean"``, ``"max"`` or ``"min"`` run on the engine;
            any other PyG aggregation (a name, a list of names, an ``Aggregation`` module) needs PyG and
            gets the messages sorted by target (default: ``"add"``).
        bias (bool): bias on the neighbour term (default: ``True``).
        aggr_kwargs (dict, optional): arguments of PyG's aggregation resolver (e.g. ``mode`` for a list).

    Shapes:
        - ``x``: ``[N, C_in]`` (dense or torch sparse) or ``(x_src [N_in, C_src], x_dst [N_out, C_dst] or None)``;
          or a PyG ``Data``.
        - ``edge_index``: ``[2, E]``, a PyG ``EdgeIndex`` or a sparse adjacency ``A[target, source]``;
          ``edge_weight``: ``[E]``; ``size``: ``(N_in, N_out)`` (optional).
        - output: ``[N_out, C_out]``.

    Attributes:
        lin_rel.weight (Tensor): ``[C_out, C_src]``; lin_rel.bias ``[C_out]``.
        lin_root.weight (Tensor): ``[C_out, C_dst]``.
        aggr_module (Aggregation or None): the PyG module when ``aggr`` needs one.

    Example:
        >>> conv = GraphConv(8, 4)
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: Channels, out_channels: int, aggr: Aggr = "add", bias: bool = True,
                 aggr_kwargs: Optional[dict] = None):
        super().__init__()
        check_channels("GraphConv", in_channels, out_channels)
        self.aggr, self.aggr_module = resolve_aggregation("GraphConv", aggr, aggr_kwargs)
        c_src, c_dst = pair_channels(in_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin_rel = make_linear(c_src, out_channels, bias=bias)
        self.lin_root = make_linear(c_dst, out_channels, bias=False)
        self._graph_cache = IdentityCache()
        self._feature_cache = IdentityCache()

    def reset_parameters(self) -> None:
        for module in (self.aggr_module, self.lin_rel, self.lin_root):
            if module is not None:
                module.reset_parameters()

    def forward(self, x, edge_index=None, edge_weight: Optional[Tensor] = None, size=None) -> Tensor:
        x_src, x_dst, rulebook, pair_scale = graph_pair_inputs(
            "GraphConv", x, edge_index, edge_weight, size, (in_width(self.lin_rel), in_width(self.lin_root)),
            self._graph_cache)
        materialize(self.lin_rel, x_src)
        materialize(self.lin_root, x_dst)
        out = aggregate_neighbours(x_src, rulebook, pair_scale, self.lin_rel.weight.t(), self.aggr,
                                   self.aggr_module, self._feature_cache)
        if self.lin_rel.bias is not None:
            out = out + self.lin_rel.bias
        if x_dst is not None:
            out = out + linear(x_dst, self.lin_root.weight.t(), self._feature_cache)
        return out
