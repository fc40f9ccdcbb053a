"""GraphConv: "Weisfeiler and Leman Go Neural: Higher-order Graph Neural Networks" (Morris et al.,
arXiv:1810.02244).

Gather -> compute -> scatter: the rulebook is the edge list (one offset), the edge weight the per-pair
scale; the neighbour sum times :math:`\\Theta_1` is one engine call (the engine picks the order of
transform and aggregation), the root term :math:`\\Theta_2 \\mathbf{x}_i` a plain matmul.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ...functional.graph import linear, propagate
from ...rulebook.cache import IdentityCache
from ._common import Channels, check_channels, graph_pair_inputs, layer_repr, pair_channels

AGGREGATIONS = ("add", "sum", "mean", "max")


class GraphConv(nn.Module):
    """Graph convolution of Morris et al., drop-in for PyG's ``GraphConv``.

    .. math::
        \\mathbf{x}'_i = \\Theta_1 \\bigoplus_{j \\in \\mathcal{N}(i)} e_{ji} \\mathbf{x}_j + \\Theta_2 \\mathbf{x}_i

    Args:
        in_channels (int or tuple): ``C_in``, or ``(C_src, C_dst)`` for bipartite graphs.
        out_channels (int): ``C_out``.
        aggr (str): ``"add"``, ``"mean"`` or ``"max"`` (default: ``"add"``).
        bias (bool): bias on the neighbour term (default: ``True``).

    Shapes:
        - ``x``: ``[N, C_in]`` (dense or torch sparse) or ``(x_src [N_in, C_src], x_dst [N_out, C_dst])``;
          or a PyG ``Data``.
        - ``edge_index``: ``[2, E]`` or a sparse adjacency ``A[target, source]``; ``edge_weight``: ``[E]``.
        - output: ``[N_out, C_out]``.

    Attributes:
        lin_rel.weight (Tensor): ``[C_out, C_src]``; lin_rel.bias ``[C_out]``.
        lin_root.weight (Tensor): ``[C_out, C_dst]``.

    Example:
        >>> conv = GraphConv(8, 4)
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: Channels, out_channels: int, aggr: str = "add", bias: bool = True):
        super().__init__()
        if aggr not in AGGREGATIONS:
            raise ValueError(f"GraphConv: aggr must be one of {AGGREGATIONS}, got {aggr!r}")
        check_channels("GraphConv", in_channels, out_channels)
        c_src, c_dst = pair_channels(in_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.aggr = aggr
        self.lin_rel = nn.Linear(c_src, out_channels, bias=bias)
        self.lin_root = nn.Linear(c_dst, out_channels, bias=False)
        self._graph_cache = IdentityCache()
        self._feature_cache = IdentityCache()

    def reset_parameters(self) -> None:
        self.lin_rel.reset_parameters()
        self.lin_root.reset_parameters()

    def forward(self, x, edge_index=None, edge_weight: Optional[Tensor] = None) -> Tensor:
        x_src, x_dst, rulebook, pair_scale = graph_pair_inputs("GraphConv", x, edge_index, edge_weight,
                                                               self.in_channels, self._graph_cache)
        out = propagate(x_src, rulebook, pair_scale, self.lin_rel.weight.t(), self.aggr, self._feature_cache)
        if self.lin_rel.bias is not None:
            out = out + self.lin_rel.bias
        if x_dst is not None:
            out = out + linear(x_dst, self.lin_root.weight.t(), self._feature_cache)
        return out

    def __repr__(self) -> str:
        return layer_repr(self, (self.in_channels, self.out_channels), aggr=(self.aggr, "add"),
                          bias=(self.lin_rel.bias is not None, True))
