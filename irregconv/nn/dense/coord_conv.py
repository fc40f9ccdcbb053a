"""CoordConv: a convolution that also sees each site's normalised coordinates (and radius).

Paper: "An Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution", Liu et al.,
arXiv:1807.03247.

Gather -> compute -> scatter: the ordinary ``k x k`` grid rulebook over input rows widened by two (or
three) coordinate columns, so the per-offset GEMM is ``[C_in + 2 (+ 1), C_out]``; the coordinates
are a function of the row's site, which on a sparse tensor would be its voxel coordinates.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._args import check_input, check_int
from ._conv import chain_macs
from ._counting import CountingMixin
from .conv2d import Conv2d


def coordinate_channels(x: Tensor, with_r: bool = False) -> Tensor:
    """``[B, 2 (+ 1), H, W]``: row ``y`` and column ``x`` scaled to ``[-1, 1]`` (0 along a size-1 axis),
    and ``r = sqrt(y^2 + x^2)`` with ``with_r``."""
    batch, _, height, width = x.shape

    def axis(n: int) -> Tensor:
        coords = torch.arange(n, device=x.device, dtype=x.dtype)
        return coords * (2 / (n - 1)) - 1 if n > 1 else coords

    yy, xx = torch.meshgrid(axis(height), axis(width), indexing="ij")
    channels = [yy, xx] + ([torch.sqrt(yy * yy + xx * xx)] if with_r else [])
    return torch.stack(channels).unsqueeze(0).expand(batch, -1, -1, -1)


class CoordConv2d(CountingMixin, nn.Module):
    r"""Append coordinate channels ``(y, x[, r])`` to the input, then an ordinary conv.

    .. math::
        y = W * [x; \, \mathbf{c}_y; \, \mathbf{c}_x; \, \mathbf{r}] + \text{bias},
        \qquad \mathbf{c}_y(i, j) = \tfrac{2 i}{H - 1} - 1, \; \mathbf{c}_x(i, j) = \tfrac{2 j}{W - 1} - 1,
        \; \mathbf{r} = \sqrt{\mathbf{c}_y^2 + \mathbf{c}_x^2}

    Args:
        in_channels (int): ``C_in`` (without the coordinate channels).
        out_channels (int): ``C_out``.
        kernel_size (int or tuple): ``k`` (default: 3).
        stride (int or tuple): ``s`` (default: 1).
        padding (int, tuple or None): None means "same" (default: None).
        dilation (int or tuple): ``d`` (default: 1).
        bias (bool): (default: True).
        with_r (bool): also append the radius channel (default: False).
        backend (str): ``"native"`` or ``"engine"`` for the conv (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` (``Conv2d``'s output size).

    Attributes:
        conv (Conv2d): weight ``[C_out, C_in + 2 (+ 1), k, k]``; channels ``C_in``, ``C_in + 1`` (and
            ``C_in + 2``) read ``y``, ``x`` (and ``r``).

    Parameters ``k^2 (C_in + 2 (+ 1)) C_out + C_out``; MACs ``H_out W_out k^2 (C_in + 2 (+ 1)) C_out``.

    Example:
        >>> CoordConv2d(3, 8, with_r=True)(torch.randn(2, 3, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None, dilation=1,
                 bias: bool = True, with_r: bool = False, backend: str = "native"):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.with_r = bool(with_r)
        self.conv = Conv2d(in_channels + (3 if with_r else 2), out_channels, kernel_size, stride, padding, dilation,
                           bias=bias, backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.conv(torch.cat([x, coordinate_channels(x, self.with_r)], dim=1))

    def _sample_macs(self, height: int, width: int) -> int:
        return chain_macs((self.conv,), (self.conv.in_channels, height, width))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}" + (", with_r=True" if self.with_r else "")
