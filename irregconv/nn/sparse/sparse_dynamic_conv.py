"""Sparse dynamic convolution: per-batch-item attention over a bank of submanifold kernels.

Paper: "Dynamic Convolution: Attention over Convolution Kernels", Chen, Dai, Liu, Chen, Yuan, Liu, CVPR 2020,
arXiv:1912.03458 (dense counterpart: :class:`irregconv.nn.DynamicConv2d`).

Gather -> compute -> scatter: the submanifold rulebook of the input sites is shared by every batch item;
the attention of item ``b`` comes from its features averaged over its active sites, and each output site
gets its item's aggregated kernel ``sum_k pi_bk W_k`` — by linearity one engine call with the kernels stacked
along the output axis, each output row then weighting its ``K`` results by its item's attention (see
:mod:`irregconv.nn.sparse._experts`). Scatter is the usual sum; outputs stay on the input sites.
"""
from __future__ import annotations

from typing import Union

from torch import Tensor

from ...rulebook import KernelRegion
from ...tensor import SparseTensor
from .._kernel_attention import KernelAttention
from ._experts import ExpertSubMConv3d


class SparseDynamicConv3d(KernelAttention, ExpertSubMConv3d):
    r"""Dynamic submanifold 3-D convolution: a per-batch-item, attention-weighted sum of ``K`` kernels.

    .. math::
        \pi_b = \mathrm{softmax}\big((W_2\, \mathrm{ReLU}(W_1 \bar{x}_b + c_1) + c_2) / T\big), \quad
        \bar{x}_b = \frac{1}{|A_b|} \sum_{j \in A_b} x_j, \qquad
        y_o = \sum_{t} \Big(\sum_{k=1}^{K} \pi_{bk} W_{k,t}\Big)^{\!\top} x_{o + \delta_t} + \sum_k \pi_{bk} b_k

    for every active site ``o`` of batch item ``b``; ``A_b`` is the set of ACTIVE sites of item ``b`` (the
    average is over them, not over the grid volume) and ``t`` runs over the active neighbours as in
    :class:`~irregconv.nn.SubMConv3d`. The attention weights are positive and sum to 1; a large temperature
    (30 in the paper) keeps them near uniform early in training; anneal it with :meth:`anneal_temperature`.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): (default: 3).
        dilation (int or tuple): (default: 1).
        groups (int): grouped / depthwise kernels (default: 1).
        bias (bool): one bias per kernel, aggregated like the kernels (default: True).
        region (str or KernelRegion): ``"cube"``, ``"cross"`` or custom taps (default: ``"cube"``).
        num_kernels (int): ``K`` kernels in the bank (default: 4, as in the paper).
        temperature (float): initial softmax temperature ``T`` (default: 30.0, as in the paper).
        reduction (int): the attention's hidden layer has ``C_in // reduction + 1`` units (default: 4).

    Shapes:
        - input: SparseTensor ``feats [N, C_in]``, ``coords [N, 1 + 3]``
        - output: SparseTensor ``feats [N, C_out]`` on the same sites (same row order).

    Attributes:
        weight (Tensor): ``[K, V, C_in, C_out]``, grouped ``[K, V, G, C_in/G, C_out/G]`` (``V`` taps).
        bias (Tensor or None): ``[K, C_out]``.
        attention (nn.Sequential): ``Linear(C_in, hidden) -> ReLU -> Linear(hidden, K)``.
        temperature (float): the current temperature; ``initial_temperature`` keeps the start value.

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.randn(3, 4), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [1, 2, 2, 2]]))
        >>> SparseDynamicConv3d(4, 8)(x).feats.shape
        torch.Size([3, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, dilation=1, groups: int = 1,
                 bias: bool = True, region: Union[str, KernelRegion] = "cube", num_kernels: int = 4,
                 temperature: float = 30.0, reduction: int = 4):
        super().__init__(in_channels, out_channels, kernel_size, dilation, groups, bias, region, num_kernels,
                         "num_kernels")
        self._init_attention(in_channels, num_kernels, temperature, reduction)
        self.reset_parameters()

    def coefficients(self, input: SparseTensor) -> Tensor:
        """``[B, K]`` attention over the kernels (rows sum to 1), from each item's mean over its active sites."""
        return self.kernel_attention(self.pooled(input))
