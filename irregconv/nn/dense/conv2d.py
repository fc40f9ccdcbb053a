"""Conv2d: ordinary 2-D convolution on a dense grid, run natively, through the engine, or by space-to-batch.

Paper: the convolutional layer of "Gradient-Based Learning Applied to Document Recognition", LeCun et al.,
Proc. IEEE 1998 (no arXiv id); dilated (atrous) convolution: "Multi-Scale Context Aggregation by Dilated
Convolutions", Yu and Koltun, arXiv:1511.07122; grouped convolution: "Aggregated Residual Transformations
for Deep Neural Networks" (ResNeXt), arXiv:1611.05431.

Gather -> compute -> scatter: the rulebook is the full ``[B, H, W]`` grid (every site active); offset
``k`` pairs input site ``o s - p + tap_k d`` with output site ``o``, the compute is one
``[C_in/G, C_out/G]`` GEMM per offset and group, and the scatter sums over offsets. Zero padding is
the absence of pairs; other padding modes pad the tensor first. Grouped, 1x1 (pointwise) and
dilated convolutions are this class with the corresponding arguments.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from ...functional.dense_conv import space_to_batch_conv2d
from ._conv import DenseConvNd


class Conv2d(DenseConvNd):
    r"""2-D convolution (cross-correlation, as ``torch.nn.Conv2d``) with a selectable backend.

    .. math::
        y_{b, o} = \sum_k \sum_{c} W_{o, c, k} \, x_{b, c, o s - p + k d} + \text{bias}_o

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): ``p``; None means "same", ``d (k - 1) // 2`` (default: None).
        dilation (int or tuple): ``d`` (default: 1).
        groups (int): ``G``, dividing ``C_in`` and ``C_out`` (default: 1).
        bias (bool): learn an additive bias (default: True).
        padding_mode (str): ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (default: "zeros").
        backend (str): ``"native"`` (``F.conv2d``), ``"engine"`` (full-grid rulebook through
            ``gather_scatter``) or ``"space_to_batch"`` (stride 1 only: the ``d_h d_w`` phase sub-grids
            stacked along the batch, one undilated conv, batch-to-space) (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``,
        ``H_out = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``H_out = H`` by default).

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k_h, k_w]`` (torch's layout and initialisation).
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> conv = Conv2d(4, 8, backend="engine")
        >>> conv(torch.randn(2, 4, 5, 6)).shape
        torch.Size([2, 8, 5, 6])
    """

    dims = 2
    backends = ("space_to_batch",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", backend: str = "native"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, backend=backend)

    def _check_backend(self, owner: str) -> None:
        if self.backend == "space_to_batch" and self.stride != (1, 1):
            raise ValueError(f"{owner}: backend='space_to_batch' needs stride=1, got stride={self.stride}; "
                             f"use backend='native' or 'engine'")

    def _alternative(self, x: Tensor, padding: Sequence[int]) -> Tensor:
        ph, pw = padding
        return space_to_batch_conv2d(F.pad(x, (pw, pw, ph, ph)), self.weight, self.bias, self.dilation, self.groups)
