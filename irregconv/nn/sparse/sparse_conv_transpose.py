"""Generative transposed sparse convolution: every tap of every input site creates an output site.

Gather -> compute -> scatter over the adjoint relation ``out = in * stride - padding + tap * dilation``;
equals ``torch.nn.functional.conv_transpose3d`` of the densified input at every output site. Use it to
grow geometry (decoders, completion); use :class:`SparseInverseConv3d` to return to known sites.
"""
from .base import SparseConvBase


class SparseConvTransposeNd(SparseConvBase):
    """Transposed sparse convolution.

    Shapes:
        - input: SparseTensor ``[N_in, C_in]`` on a grid ``S``
        - output: SparseTensor ``[N_out, C_out]`` on a grid
          ``S_out = (S - 1) s - 2 p + d (k - 1) + output_padding + 1``.

    Attributes:
        weight: ``[K, C_in, C_out]``; tap ``k`` of input ``i`` writes output ``i * s - p + t_k * d``
            (torch's ``conv_transpose3d`` weight ``[C_in, C_out, *k]`` at the same tap).
    """

    kind = "transposed"


class SparseConvTranspose1d(SparseConvTransposeNd):
    """1D :class:`SparseConvTransposeNd`."""
    dims = 1


class SparseConvTranspose2d(SparseConvTransposeNd):
    """2D :class:`SparseConvTransposeNd`."""
    dims = 2


class SparseConvTranspose3d(SparseConvTransposeNd):
    """3D :class:`SparseConvTransposeNd`."""
    dims = 3


class SparseConvTranspose4d(SparseConvTransposeNd):
    """4D :class:`SparseConvTransposeNd`."""
    dims = 4
