"""Regular (strided) sparse convolution, spconv's definition of output sites.

Gather -> compute -> scatter: the rulebook pairs each input site with every output site one of its kernel
taps reaches (``in = out * stride - padding + tap * dilation``); output sites are all sites reached,
sorted by (batch, *spatial).
"""
from .base import SparseConvBase


class SparseConvNd(SparseConvBase):
    """Strided sparse convolution; equals ``torch.nn.functional.conv3d`` on the densified input at every
    output site (the output sites are every site some tap reaches).

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size, stride, padding, dilation (int or tuple): as ``torch.nn.Conv3d``.
        groups (int): grouped / depthwise convolution (default: 1).
        bias (bool): (default: True).
        region (str or KernelRegion): (default: ``"cube"``).

    Shapes:
        - input: SparseTensor ``[N_in, C_in]`` on a grid ``S``
        - output: SparseTensor ``[N_out, C_out]`` on a grid
          ``S_out = floor((S + 2 p - d (k - 1) - 1) / s) + 1``.
    """

    kind = "strided"


class SparseConv1d(SparseConvNd):
    """1D :class:`SparseConvNd`."""
    dims = 1


class SparseConv2d(SparseConvNd):
    """2D :class:`SparseConvNd`."""
    dims = 2


class SparseConv3d(SparseConvNd):
    """3D :class:`SparseConvNd`.

    Example:
        >>> import torch, irregconv
        >>> x = irregconv.SparseTensor(torch.randn(2, 4), torch.tensor([[0, 0, 0, 0], [0, 3, 3, 3]]), (4, 4, 4))
        >>> SparseConv3d(4, 8, 3, stride=2, padding=1)(x).spatial_shape
        (2, 2, 2)
    """
    dims = 3


class SparseConv4d(SparseConvNd):
    """4D :class:`SparseConvNd`."""
    dims = 4
