"""Conv3d: ordinary 3-D convolution on a dense volume, run natively or through the engine.

Paper: "3D Convolutional Neural Networks for Human Action Recognition", Ji, Xu, Yang, Yu, TPAMI 2013
(no arXiv id); "Learning Spatiotemporal Features with 3D Convolutional Networks" (C3D), arXiv:1412.0767.

Gather -> compute -> scatter: the rulebook is the full ``[B, D, H, W]`` grid (every voxel active), the
same kind a :class:`~irregconv.nn.SparseConv3d` builds from a hash table, here built analytically;
one ``[C_in/G, C_out/G]`` GEMM per kernel offset and group, summed over offsets at each output voxel.
"""
from __future__ import annotations

from ._conv import DenseConvNd


class Conv3d(DenseConvNd):
    r"""3-D convolution (cross-correlation, as ``torch.nn.Conv3d``) with ``backend="native"|"engine"``.

    .. math::
        y_{b, o} = \sum_k \sum_{c} W_{o, c, k} \, x_{b, c, o s - p + k d} + \text{bias}_o

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): ``p``; None means "same", ``d (k - 1) // 2`` (default: None).
        dilation (int or tuple): ``d`` (default: 1).
        groups (int): ``G`` (default: 1).
        bias (bool): learn an additive bias (default: True).
        padding_mode (str): ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (default: "zeros").
        backend (str): ``"native"`` (``F.conv3d``) or ``"engine"`` (default: "native").

    Shapes:
        input ``[B, C_in, D, H, W]`` -> ``[B, C_out, D_out, H_out, W_out]``,
        ``D_out = floor((D + 2 p - d (k - 1) - 1) / s) + 1`` per axis.

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k_d, k_h, k_w]``.
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> Conv3d(2, 4, backend="engine")(torch.randn(1, 2, 3, 4, 5)).shape
        torch.Size([1, 4, 3, 4, 5])
    """

    dims = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", backend: str = "native"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, backend=backend)
