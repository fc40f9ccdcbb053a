"""Inverse sparse convolution: the exact inverse of the sites of a strided sparse conv.

Gather -> compute -> scatter over the transpose of the strided convolution's rulebook (found on the input
sites, which that convolution produced), so the output lies exactly on the sites the strided conv saw:
the decoder half of a U-Net returns to its encoder's geometry without creating sites.
"""
from ...rulebook.region import as_tuple
from .base import SparseConvBase


class SparseInverseConvNd(SparseConvBase):
    """Inverse of a strided sparse convolution with the same kernel region.

    Equals ``torch.nn.functional.conv_transpose3d`` (with the strided conv's stride, padding and dilation)
    of the densified input, evaluated at the strided conv's input sites.

    Args:
        in_channels, out_channels (int): ``C_in``, ``C_out``.
        kernel_size (int or tuple): kernel of the strided conv to invert.
        stride, padding, dilation (optional): only needed when several strided convs with this kernel
            produced the input sites, to say which one to invert (default: None).
        bias (bool): (default: True).

    Shapes:
        - input: SparseTensor ``[N_out_of_strided, C_in]`` made by a strided conv
        - output: SparseTensor ``[N_in_of_strided, C_out]`` on that conv's input sites and grid.
    """

    kind = "inverse"

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=None, padding=None,
                 dilation=None, groups: int = 1, bias: bool = True, region="cube"):
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, bias=bias, region=region)
        owner = type(self).__name__
        self.inverse_of = {
            "stride": None if stride is None else as_tuple(stride, self.dims, "stride", owner),
            "padding": None if padding is None else as_tuple(padding, self.dims, "padding", owner, minimum=0),
            "dilation": None if dilation is None else as_tuple(dilation, self.dims, "dilation", owner)}


class SparseInverseConv1d(SparseInverseConvNd):
    """1D :class:`SparseInverseConvNd`."""
    dims = 1


class SparseInverseConv2d(SparseInverseConvNd):
    """2D :class:`SparseInverseConvNd`."""
    dims = 2


class SparseInverseConv3d(SparseInverseConvNd):
    """3D :class:`SparseInverseConvNd`."""
    dims = 3


class SparseInverseConv4d(SparseInverseConvNd):
    """4D :class:`SparseInverseConvNd`."""
    dims = 4
