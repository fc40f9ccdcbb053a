"""Submanifold sparse convolution (Graham, Engelcke & van der Maaten, "3D Semantic Segmentation with
Submanifold Sparse Convolutional Networks", arXiv:1711.10275).

Gather -> compute -> scatter: the rulebook pairs every active site with its active neighbours under the
centred kernel; output sites are the input sites, so sparsity never dilates. The centre offset is a plain
matmul.
"""
from .base import SparseConvBase


class SubMConvNd(SparseConvBase):
    """Submanifold convolution: ``y_o = sum_k W_k^T x_{o + (t_k - c) d}`` over active neighbours, outputs on
    the input sites.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): odd or even; the centre is ``kernel_size // 2`` (default: 3).
        dilation (int or tuple): (default: 1).
        groups (int): grouped / depthwise convolution (default: 1).
        bias (bool): (default: True).
        region (str or KernelRegion): ``"cube"``, ``"cross"`` or custom taps (default: ``"cube"``).

    Shapes:
        - input: SparseTensor ``feats [N, C_in]``, ``coords [N, 1 + D]``
        - output: SparseTensor ``feats [N, C_out]`` on the same sites (same row order).

    Attributes:
        weight: ``[K, C_in, C_out]``, grouped ``[K, G, C_in/G, C_out/G]``; ``K`` taps in C order.
        bias: ``[C_out]``.
    """

    kind = "subm"

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, dilation=1, groups: int = 1,
                 bias: bool = True, region="cube"):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=dilation,
                         groups=groups, bias=bias, region=region)


class SubMConv1d(SubMConvNd):
    """1D :class:`SubMConvNd`."""
    dims = 1


class SubMConv2d(SubMConvNd):
    """2D :class:`SubMConvNd`.

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.randn(3, 4), torch.tensor([[0, 0, 0], [0, 0, 1], [0, 5, 5]]))
        >>> SubMConv2d(4, 8)(x).feats.shape
        torch.Size([3, 8])
    """
    dims = 2


class SubMConv3d(SubMConvNd):
    """3D :class:`SubMConvNd`."""
    dims = 3


class SubMConv4d(SubMConvNd):
    """4D :class:`SubMConvNd` (e.g. space-time)."""
    dims = 4

