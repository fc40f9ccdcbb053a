"""SAGEConv: "Inductive Representation Learning on Large Graphs" (Hamilton et al., arXiv:1706.02216).

Gather -> compute -> scatter: the rulebook is the edge list (one offset); the mean aggregator is a
sum whose per-pair scale is ``1 / in-degree(target)``, so aggregation and :math:`\\mathbf{W}_2` run as
one engine call; max aggregation gathers the messages and reduces them with ``engine.aggregate``.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...functional.graph import linear, propagate
from ...rulebook.cache import IdentityCache
from ._common import Channels, check_channels, graph_pair_inputs, layer_repr, pair_channels

AGGREGATIONS = ("mean", "add", "sum", "max")


class SAGEConv(nn.Module):
    """GraphSAGE convolution, drop-in for PyG's ``SAGEConv``.

    .. math::
        \\mathbf{x}'_i = \\mathbf{W}_1 \\mathbf{x}_i + \\mathbf{W}_2 \\cdot
        \\mathrm{mean}_{j \\in \\mathcal{N}(i)} \\mathbf{x}_j

    Args:
        in_channels (int or tuple): ``C_in``, or ``(C_src, C_dst)`` for bipartite graphs.
        out_channels (int): ``C_out``.
        aggr (str): ``"mean"``, ``"add"`` or ``"max"`` (default: ``"mean"``).
        normalize (bool): L2-normalise the output rows (default: ``False``).
        root_weight (bool): add the root term :math:`\\mathbf{W}_1 \\mathbf{x}_i` (default: ``True``).
        project (bool): first project source features by a linear layer with ReLU (default: ``False``).
        bias (bool): bias of the neighbour term (default: ``True``).

    Shapes:
        - ``x``: ``[N, C_in]`` (dense or torch sparse) or ``(x_src [N_in, C_src], x_dst [N_out, C_dst])``;
          or a PyG ``Data``.
        - ``edge_index``: ``[2, E]`` or a sparse adjacency ``A[target, source]`` (its values are ignored,
          as PyG ignores edge weights here).
        - output: ``[N_out, C_out]``.

    Attributes:
        lin_l.weight (Tensor): ``[C_out, C_src]`` (neighbour term), lin_l.bias ``[C_out]``.
        lin_r.weight (Tensor): ``[C_out, C_dst]`` (root term), when ``root_weight``.
        lin.weight (Tensor): ``[C_src, C_src]``, lin.bias ``[C_src]``, when ``project``.

    Example:
        >>> conv = SAGEConv(8, 4)
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: Channels, out_channels: int, aggr: str = "mean", normalize: bool = False,
                 root_weight: bool = True, project: bool = False, bias: bool = True):
        super().__init__()
        if aggr not in AGGREGATIONS:
            raise ValueError(f"SAGEConv: aggr must be one of {AGGREGATIONS}, got {aggr!r}")
        check_channels("SAGEConv", in_channels, out_channels)
        c_src, c_dst = pair_channels(in_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.aggr = aggr
        self.normalize = normalize
        self.root_weight = root_weight
        self.project = project
        self.lin = nn.Linear(c_src, c_src, bias=True) if project else None
        self.lin_l = nn.Linear(c_src, out_channels, bias=bias)
        self.lin_r = nn.Linear(c_dst, out_channels, bias=False) if root_weight else None
        self._graph_cache = IdentityCache()
        self._feature_cache = IdentityCache()

    def reset_parameters(self) -> None:
        for lin in (self.lin, self.lin_l, self.lin_r):
            if lin is not None:
                lin.reset_parameters()

    def forward(self, x, edge_index=None) -> Tensor:
        x_src, x_dst, rulebook, _ = graph_pair_inputs("SAGEConv", x, edge_index, None, self.in_channels,
                                                      self._graph_cache)
        if self.lin is not None:
            x_src = F.relu(linear(x_src, self.lin.weight.t(), self._feature_cache) + self.lin.bias)
        out = propagate(x_src, rulebook, None, self.lin_l.weight.t(), self.aggr, self._feature_cache)
        if self.lin_l.bias is not None:
            out = out + self.lin_l.bias
        if self.lin_r is not None and x_dst is not None:
            out = out + linear(x_dst, self.lin_r.weight.t(), self._feature_cache)
        return F.normalize(out, p=2.0, dim=-1) if self.normalize else out

    def __repr__(self) -> str:
        return layer_repr(self, (self.in_channels, self.out_channels), aggr=(self.aggr, "mean"),
                          normalize=(self.normalize, False), root_weight=(self.root_weight, True),
                          project=(self.project, False), bias=(self.lin_l.bias is not None, True))
