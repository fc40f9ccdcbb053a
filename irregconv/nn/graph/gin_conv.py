"""GINConv: "How Powerful are Graph Neural Networks?" (Xu et al., arXiv:1810.00826).

Gather -> compute -> scatter: the rulebook is the edge list (one offset) and the engine computes the
plain neighbour sum (identity weight); the learnable MLP runs on the aggregated rows.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...functional.graph import is_sparse, propagate
from ...rulebook.cache import IdentityCache
from ._common import check_message_nn, graph_pair_inputs


class GINConv(nn.Module):
    """Graph isomorphism operator, drop-in for PyG's ``GINConv``.

    .. math::
        \\mathbf{x}'_i = h_{\\Theta}\\Big((1 + \\epsilon) \\mathbf{x}_i + \\sum_{j \\in \\mathcal{N}(i)} \\mathbf{x}_j\\Big)

    Args:
        nn (torch.nn.Module): :math:`h_\\Theta`, mapping ``[N, C_in]`` to ``[N, C_out]`` (e.g. an MLP).
        eps (float): initial :math:`\\epsilon` (default: 0).
        train_eps (bool): learn :math:`\\epsilon` (default: ``False``).

    Shapes:
        - ``x``: ``[N, C_in]`` (torch-sparse features are densified for the sum) or
          ``(x_src [N_in, C_in], x_dst [N_out, C_in])``; or a PyG ``Data``.
        - ``edge_index``: ``[2, E]`` or a sparse adjacency ``A[target, source]`` (values ignored, as in PyG).
        - output: ``[N_out, C_out]``.

    Attributes:
        eps (Tensor): ``[1]``, a parameter if ``train_eps`` else a buffer (PyG's names).

    Example:
        >>> conv = GINConv(torch.nn.Linear(8, 4))
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]])).shape
        torch.Size([3, 4])
    """

    def __init__(self, nn: nn.Module, eps: float = 0.0, train_eps: bool = False):
        super().__init__()
        check_message_nn("GINConv", nn)
        self.nn = nn
        self.initial_eps = eps
        self._graph_cache = IdentityCache()
        if train_eps:
            self.eps = torch.nn.Parameter(torch.empty(1))
        else:
            self.register_buffer("eps", torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.nn.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.eps.data.fill_(self.initial_eps)

    def forward(self, x, edge_index=None) -> Tensor:
        x_src, x_dst, rulebook, _ = graph_pair_inputs("GINConv", x, edge_index, None, None,
                                                      self._graph_cache)
        out = propagate(x_src, rulebook)
        if x_dst is not None:
            out = out + (1 + self.eps) * (x_dst.to_dense() if is_sparse(x_dst) else x_dst)
        return self.nn(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nn={self.nn})"

