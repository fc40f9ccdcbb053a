"""GINConv: "How Powerful are Graph Neural Networks?" (Xu et al., arXiv:1810.00826).

Gather -> compute -> scatter: the rulebook is the edge list (one offset) and the engine computes the
plain neighbour sum (identity weight); the learnable MLP runs on the aggregated rows.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ...functional.graph import is_sparse
from ...rulebook.cache import IdentityCache
from ._common import Aggr, GraphLayer, aggregate_neighbours, check_message_nn, graph_pair_inputs, resolve_aggregation


class GINConv(GraphLayer):
    """Graph isomorphism operator, drop-in for PyG's ``GINConv``.

    .. math::
        \\mathbf{x}'_i = h_{\\Theta}\\Big((1 + \\epsilon) \\mathbf{x}_i + \\sum_{j \\in \\mathcal{N}(i)} \\mathbf{x}_j\\Big)

    Args:
        nn (torch.nn.Module): :math:`h_\\Theta`, mapping ``[N, C_in]`` to ``[N, C_out]`` (e.g. an MLP).
        eps (float): initial :math:`\\epsilon` (default: 0).
        train_eps (bool): learn :math:`\\epsilon` (default: ``False``).
        aggr (str, list or Aggregation): the neighbour reduction, as PyG's ``aggr`` keyword; ``"add"``,
            ``"mean"``, ``"max"``, ``"min"`` run on the engine, others need PyG (default: ``"add"``).
        aggr_kwargs (dict, optional): arguments of PyG's aggregation resolver.

    Shapes:
        - ``x``: ``[N, C_in]`` (torch-sparse features are densified for the sum) or
          ``(x_src [N_in, C_in], x_dst [N_out, C_in] or None)``; or a PyG ``Data``.
        - ``edge_index``: ``[2, E]``, a PyG ``EdgeIndex`` or a sparse adjacency ``A[target, source]`` (values
          ignored, as in PyG); ``size``: ``(N_in, N_out)`` (optional).
        - output: ``[N_out, C_out]``.

    Attributes:
        eps (Tensor): ``[1]``, a parameter if ``train_eps`` else a buffer (PyG's names).

    Example:
        >>> conv = GINConv(torch.nn.Linear(8, 4))
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, nn: nn.Module, eps: float = 0.0, train_eps: bool = False, aggr: Aggr = "add",
                 aggr_kwargs: Optional[dict] = None):
        super().__init__()
        check_message_nn("GINConv", nn)
        self.aggr, self.aggr_module = resolve_aggregation("GINConv", aggr, aggr_kwargs)
        self.nn = nn
        self.initial_eps = eps
        self._graph_cache = IdentityCache()
        if train_eps:
            self.eps = torch.nn.Parameter(torch.empty(1))
        else:
            self.register_buffer("eps", torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in [self.aggr_module, *self.nn.modules()]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.eps.data.fill_(self.initial_eps)

    def forward(self, x, edge_index=None, size=None) -> Tensor:
        x_src, x_dst, rulebook, _ = graph_pair_inputs("GINConv", x, edge_index, None, size, (None, None),
                                                      self._graph_cache)
        out = aggregate_neighbours(x_src, rulebook, None, None, self.aggr, self.aggr_module, None)
        if x_dst is not None:
            out = out + (1 + self.eps) * (x_dst.to_dense() if is_sparse(x_dst) else x_dst)
        return self.nn(out)
