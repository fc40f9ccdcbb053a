"""SAGEConv: "Inductive Representation Learning on Large Graphs" (Hamilton et al., arXiv:1706.02216).

Gather -> compute -> scatter: the rulebook is the edge list (one offset); the mean aggregator is a
sum whose per-pair scale is ``1 / in-degree(target)``, so aggregation and :math:`\\mathbf{W}_2` run as
one engine call; max/min gather the messages and reduce them with ``engine.aggregate``; PyG aggregation
modules (LSTM, lists of aggregations, ...) get the gathered messages sorted by target.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from ...functional.graph import linear
from ...rulebook.cache import IdentityCache
from ._common import (Aggr, Channels, GraphLayer, aggregate_neighbours, check_channels, graph_pair_inputs, in_width,
                      make_linear, materialize, pair_channels, resolve_aggregation)


class SAGEConv(GraphLayer):
    """GraphSAGE convolution, drop-in for PyG's ``SAGEConv``.

    .. math::
        \\mathbf{x}'_i = \\mathbf{W}_1 \\mathbf{x}_i + \\mathbf{W}_2 \\cdot
        \\mathrm{mean}_{j \\in \\mathcal{N}(i)} \\mathbf{x}_j

    Args:
        in_channels (int or tuple): ``C_in``, or ``(C_src, C_dst)`` for bipartite graphs; -1 infers a width
            from the first input (lazy, as in PyG; not with ``project``).
        out_channels (int): ``C_out``.
        aggr (str, list or Aggregation): ``"mean"``, ``"add"``, ``"max"`` or ``"min"`` run on the engine; any
            other PyG aggregation (``"lstm"``, ``"softmax"``, ...), a list of them (PyG's ``MultiAggregation``:
            ``aggr_kwargs`` sets its ``mode``) or an ``Aggregation`` module needs PyG and gets the messages
            sorted by target (default: ``"mean"``).
        normalize (bool): L2-normalise the output rows (default: ``False``).
        root_weight (bool): add the root term :math:`\\mathbf{W}_1 \\mathbf{x}_i` (default: ``True``).
        project (bool): first project source features by a linear layer with ReLU (default: ``False``).
        bias (bool): bias of the neighbour term (default: ``True``).
        aggr_kwargs (dict, optional): arguments of PyG's aggregation resolver.

    Shapes:
        - ``x``: ``[N, C_in]`` (dense or torch sparse) or ``(x_src [N_in, C_src], x_dst [N_out, C_dst] or None)``;
          or a PyG ``Data``.
        - ``edge_index``: ``[2, E]``, a PyG ``EdgeIndex`` or a sparse adjacency ``A[target, source]`` (its
          values are ignored, as PyG ignores edge weights here); ``size``: ``(N_in, N_out)`` (optional).
        - output: ``[N_out, C_out]``.

    Attributes:
        lin_l.weight (Tensor): ``[C_out, C_agg]`` (neighbour term; ``C_agg = C_src`` unless a list of
            aggregations is concatenated), lin_l.bias ``[C_out]``.
        lin_r.weight (Tensor): ``[C_out, C_dst]`` (root term), when ``root_weight``.
        lin.weight (Tensor): ``[C_src, C_src]``, lin.bias ``[C_src]``, when ``project``.
        aggr_module (Aggregation or None): the PyG module when ``aggr`` needs one.

    Example:
        >>> conv = SAGEConv(8, 4)
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: Channels, out_channels: int, aggr: Aggr = "mean", normalize: bool = False,
                 root_weight: bool = True, project: bool = False, bias: bool = True,
                 aggr_kwargs: Optional[dict] = None):
        super().__init__()
        check_channels("SAGEConv", in_channels, out_channels)
        c_src, c_dst = pair_channels(in_channels)
        if project and c_src == -1:
            raise ValueError("SAGEConv does not support lazy initialization with project=True (in_channels = "
                             f"{in_channels!r}); give the source width")
        if aggr == "lstm":  # PyG's default: an LSTM as wide as the source features
            aggr_kwargs = {"in_channels": c_src, "out_channels": c_src, **(aggr_kwargs or {})}
        self.aggr, self.aggr_module = resolve_aggregation("SAGEConv", aggr, aggr_kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.normalize = normalize
        self.root_weight = root_weight
        self.project = project
        get_out_channels = getattr(self.aggr_module, "get_out_channels", None)  # PyG's MultiAggregation
        c_agg = get_out_channels(c_src) if get_out_channels is not None and c_src > 0 else c_src
        self.lin = make_linear(c_src, c_src, bias=True) if project else None
        self.lin_l = make_linear(c_agg, out_channels, bias=bias)
        self.lin_r = make_linear(c_dst, out_channels, bias=False) if root_weight else None
        self._graph_cache = IdentityCache()
        self._feature_cache = IdentityCache()

    def reset_parameters(self) -> None:
        for module in (self.aggr_module, self.lin, self.lin_l, self.lin_r):
            if module is not None:
                module.reset_parameters()

    def forward(self, x, edge_index=None, size=None) -> Tensor:
        c_src = pair_channels(self.in_channels)[0]
        if c_src == -1:  # lazy: the width lin_l took from the first input (a MultiAggregation may widen it)
            c_src = in_width(self.lin_l) if self.aggr_module is None else None
        x_src, x_dst, rulebook, _ = graph_pair_inputs(
            "SAGEConv", x, edge_index, None, size, (c_src, None if self.lin_r is None else in_width(self.lin_r)),
            self._graph_cache)
        materialize(self.lin_r, x_dst)
        if self.lin is not None:
            x_src = F.relu(linear(x_src, self.lin.weight.t(), self._feature_cache) + self.lin.bias)
        if self.aggr_module is None:
            materialize(self.lin_l, x_src)
            out = aggregate_neighbours(x_src, rulebook, None, self.lin_l.weight.t(), self.aggr, None,
                                       self._feature_cache)
        else:
            out = aggregate_neighbours(x_src, rulebook, None, None, self.aggr, self.aggr_module, self._feature_cache)
            materialize(self.lin_l, out)
            out = out @ self.lin_l.weight.t()
        if self.lin_l.bias is not None:
            out = out + self.lin_l.bias
        if self.lin_r is not None and x_dst is not None:
            out = out + linear(x_dst, self.lin_r.weight.t(), self._feature_cache)
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr={self.aggr})"
