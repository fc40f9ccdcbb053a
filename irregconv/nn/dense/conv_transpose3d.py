"""ConvTranspose3d: transposed 3-D convolution on a dense volume, native or through the engine.

Paper: "Deconvolutional Networks", Zeiler et al., CVPR 2010 (no arXiv id); "A guide to convolution
arithmetic for deep learning", arXiv:1603.07285; as the decoder of "3D U-Net", arXiv:1606.06650.

Gather -> compute -> scatter: the transpose of the full-grid rulebook of the forward conv from the
output volume to the input volume (what :class:`~irregconv.nn.SparseInverseConv3d` does on sparse
sites); each input voxel scatters ``x_i W_k`` to ``i s - p + k d``.
"""
from __future__ import annotations

from ._conv import DenseConvNd


class ConvTranspose3d(DenseConvNd):
    r"""3-D transposed convolution (as ``torch.nn.ConvTranspose3d``) with ``backend="native"|"engine"``.

    .. math::
        y_{b, i s - p + k d} \mathrel{+}= \sum_c x_{b, c, i} W_{c, o, k}

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): ``p``; None means ``d (k - 1) // 2`` (default: None).
        output_padding (int or tuple): ``< s`` (default: 0).
        groups (int): ``G`` (default: 1).
        bias (bool): learn an additive bias (default: True).
        dilation (int or tuple): ``d`` (default: 1).
        backend (str): ``"native"`` (``F.conv_transpose3d``) or ``"engine"`` (default: "native").

    Shapes:
        input ``[B, C_in, D, H, W]`` -> ``[B, C_out, D_out, H_out, W_out]``,
        ``D_out = (D - 1) s - 2 p + d (k - 1) + output_padding + 1`` per axis.

    Attributes:
        weight (Tensor): ``[C_in, C_out / G, k_d, k_h, k_w]``.
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> ConvTranspose3d(2, 4, 2, stride=2, padding=0, backend="engine")(torch.randn(1, 2, 2, 3, 2)).shape
        torch.Size([1, 4, 4, 6, 4])
    """

    dims = 3
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, backend: str = "native"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         output_padding=output_padding, backend=backend)
