"""Sparse CondConv: a submanifold convolution whose kernel is a per-batch-item mixture of expert kernels.

Paper: "CondConv: Conditionally Parameterized Convolutions for Efficient Inference", Yang, Bender, Le,
Ngiam, NeurIPS 2019, arXiv:1904.04971 (dense counterpart: :class:`irregconv.nn.CondConv2d`).

Gather -> compute -> scatter: the rulebook is the submanifold one of the input sites (cached, shared with
any SubMConv3d of the same geometry); the routing of item ``b`` is computed from its features averaged
over its active sites, and each output site gets its own item's mixed kernel. By linearity this is one
engine call with all experts stacked along the output axis, each output row then mixing its ``E`` results
with its item's routing weights (see :mod:`irregconv.nn.sparse._experts` for why this form and what it
costs). Scatter is the usual sum; outputs stay on the input sites.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from ...rulebook import KernelRegion
from ...tensor import SparseTensor
from ._experts import ExpertSubMConv3d


class SparseCondConv3d(ExpertSubMConv3d):
    r"""Conditionally parameterised submanifold 3-D convolution (CondConv on sparse voxels).

    .. math::
        r_b = \sigma\big(R\, \bar{x}_b + c\big), \quad
        \bar{x}_b = \frac{1}{|A_b|} \sum_{j \in A_b} x_j, \qquad
        y_o = \sum_{k} \Big(\sum_{e=1}^{E} r_{be} W_{e,k}\Big)^{\!\top} x_{o + \delta_k} + \sum_e r_{be} b_e

    for every active site ``o`` of batch item ``b``, where ``A_b`` is the set of ACTIVE sites of item ``b``
    (the average is over them, not over the grid volume; an item without sites has no output) and the sum
    over ``k`` runs over the active neighbours, as in :class:`~irregconv.nn.SubMConv3d`.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): (default: 3).
        dilation (int or tuple): (default: 1).
        groups (int): grouped / depthwise experts (default: 1).
        bias (bool): one bias per expert, mixed like the kernels (default: True).
        region (str or KernelRegion): ``"cube"``, ``"cross"`` or custom taps (default: ``"cube"``).
        num_experts (int): ``E`` (default: 4, one of the paper's settings).

    Shapes:
        - input: SparseTensor ``feats [N, C_in]``, ``coords [N, 1 + 3]``
        - output: SparseTensor ``feats [N, C_out]`` on the same sites (same row order).

    Attributes:
        weight (Tensor): ``[E, K, C_in, C_out]``, grouped ``[E, K, G, C_in/G, C_out/G]``.
        bias (Tensor or None): ``[E, C_out]``.
        routing (nn.Linear): ``C_in -> E``, followed by a sigmoid.

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.randn(3, 4), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [1, 2, 2, 2]]))
        >>> SparseCondConv3d(4, 8)(x).feats.shape
        torch.Size([3, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, dilation=1, groups: int = 1,
                 bias: bool = True, region: Union[str, KernelRegion] = "cube", num_experts: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, dilation, groups, bias, region, num_experts,
                         "num_experts")
        self.routing = nn.Linear(in_channels, num_experts)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.routing.reset_parameters()

    def coefficients(self, input: SparseTensor) -> Tensor:
        """``[B, E]`` routing weights in (0, 1) (not normalised), from each item's mean over its active sites."""
        return torch.sigmoid(self.routing(self.pooled(input)))
