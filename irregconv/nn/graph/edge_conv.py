"""EdgeConv: "Dynamic Graph CNN for Learning on Point Clouds" (Wang et al., arXiv:1801.07829).

Gather -> compute -> scatter: the rulebook is the edge list (one offset; for point clouds the k-nearest
neighbour graph of :func:`irregconv.functional.knn.knn_graph`); ``message`` gathers
:math:`[\\mathbf{x}_i, \\mathbf{x}_j - \\mathbf{x}_i]` at each pair and runs the MLP; the engine's
segment reduction (max by default) scatters the messages into their targets.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ...engine import aggregate
from ...rulebook.cache import IdentityCache
from ._common import Aggr, GraphLayer, aggregate_messages, check_message_nn, graph_pair_inputs, resolve_aggregation


class EdgeConv(GraphLayer):
    """Edge convolution, drop-in for PyG's ``EdgeConv``.

    .. math::
        \\mathbf{x}'_i = \\max_{j \\in \\mathcal{N}(i)} h_{\\Theta}(\\mathbf{x}_i \\, \\Vert \\, \\mathbf{x}_j - \\mathbf{x}_i)

    Args:
        nn (torch.nn.Module): :math:`h_\\Theta`, mapping ``[P, 2 C_in]`` to ``[P, C_out]``.
        aggr (str, list or Aggregation): ``"max"``, ``"mean"``, ``"add"`` or ``"min"`` run on the engine
            (targets without incoming edges get zeros); other PyG aggregations need PyG and get the messages
            sorted by target (default: ``"max"``).
        aggr_kwargs (dict, optional): arguments of PyG's aggregation resolver.

    Shapes:
        - ``x``: ``[N, C_in]`` or ``(x_src [N_in, C_in], x_dst [N_out, C_in])``; or a PyG ``Data``.
        - ``edge_index``: ``[2, E]``, a PyG ``EdgeIndex`` or a sparse adjacency ``A[target, source]`` (values
          ignored).
        - output: ``[N_out, C_out]``.

    Example:
        >>> from irregconv.functional.knn import knn_graph
        >>> pos = torch.randn(32, 3)
        >>> conv = EdgeConv(torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU()))
        >>> conv(pos, knn_graph(pos, k=4)).shape
        torch.Size([32, 16])
    """

    def __init__(self, nn: nn.Module, aggr: Aggr = "max", aggr_kwargs: Optional[dict] = None):
        super().__init__()
        check_message_nn("EdgeConv", nn)
        self.aggr, self.aggr_module = resolve_aggregation("EdgeConv", aggr, aggr_kwargs)
        self.nn = nn
        self._graph_cache = IdentityCache()

    def reset_parameters(self) -> None:
        for module in [self.aggr_module, *self.nn.modules()]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x, edge_index=None) -> Tensor:
        x_src, x_dst, rulebook, _ = graph_pair_inputs("EdgeConv", x, edge_index, None, None, (None, None),
                                                      self._graph_cache)
        if x_dst is None:
            raise ValueError("EdgeConv: the message needs target features; pass (x_src, x_dst), not (x_src, None)")
        x_i = x_dst.index_select(-2, rulebook.out_idx)
        x_j = x_src.index_select(-2, rulebook.in_idx)
        messages = self.nn(torch.cat([x_i, x_j - x_i], dim=-1))
        if self.aggr_module is not None:
            return aggregate_messages(messages, rulebook, self.aggr_module)
        return aggregate(messages, rulebook, "sum" if self.aggr == "add" else self.aggr)
