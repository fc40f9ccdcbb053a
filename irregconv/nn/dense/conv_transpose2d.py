"""ConvTranspose2d: transposed ("fractionally strided") 2-D convolution, native, engine or pixel shuffle.

Paper: "Deconvolutional Networks", Zeiler, Krishnan, Taylor, Fergus, CVPR 2010 (no arXiv id); "A guide to
convolution arithmetic for deep learning", Dumoulin and Visin, arXiv:1603.07285; the depth-to-space form:
"Is the deconvolution layer the same as a convolutional layer?", Shi et al., arXiv:1609.07009.

Gather -> compute -> scatter: the rulebook is the transpose of the full-grid rulebook of the forward
conv from this layer's output grid to its input grid, so each input site scatters ``x_i W_k`` to the
output sites ``i s - p + k d``; the compute is one ``[C_in/G, C_out/G]`` GEMM per offset and group.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ...functional.dense_conv import pixel_shuffle_conv_transpose2d
from ._conv import DenseConvNd


class ConvTranspose2d(DenseConvNd):
    r"""2-D transposed convolution (as ``torch.nn.ConvTranspose2d``) with a selectable backend.

    .. math::
        y_{b, i s - p + k d} \mathrel{+}= \sum_c x_{b, c, i} W_{c, o, k}

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): ``p``; None means ``d (k - 1) // 2``, which keeps ``H x W`` at
            stride 1 for odd kernels (default: None).
        output_padding (int or tuple): extra rows/columns on one side, ``< s`` (default: 0).
        groups (int): ``G`` (default: 1).
        bias (bool): learn an additive bias (default: True).
        dilation (int or tuple): ``d`` (default: 1).
        backend (str): ``"native"`` (``F.conv_transpose2d``), ``"engine"`` or ``"pixel_shuffle"``
            (dilation 1 only: kernel zero-padded to a multiple of ``s``, one ordinary conv with
            ``C_out s_h s_w`` outputs, depth-to-space, crop) (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``,
        ``H_out = (H - 1) s - 2 p + d (k - 1) + output_padding + 1``.

    Attributes:
        weight (Tensor): ``[C_in, C_out / G, k_h, k_w]`` (torch's transposed layout).
        bias (Tensor or None): ``[C_out]``.

    Example:
        >>> ConvTranspose2d(4, 2, 4, stride=2, padding=1, backend="engine")(torch.randn(1, 4, 3, 5)).shape
        torch.Size([1, 2, 6, 10])
    """

    dims = 2
    transposed = True
    backends = ("pixel_shuffle",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, backend: str = "native"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         output_padding=output_padding, backend=backend)

    def _check_backend(self, owner: str) -> None:
        if self.backend == "pixel_shuffle" and self.dilation != (1, 1):
            raise ValueError(f"{owner}: backend='pixel_shuffle' needs dilation=1, got dilation={self.dilation}; "
                             f"use backend='native' or 'engine'")

    def _alternative(self, x: Tensor, padding: Sequence[int]) -> Tensor:
        return pixel_shuffle_conv_transpose2d(x, self.weight, self.bias, self.stride, padding, self.output_padding,
                                              self.groups)
