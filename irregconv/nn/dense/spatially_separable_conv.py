"""Spatially separable convolution: a ``k x 1`` conv followed by a ``1 x k`` conv.

Paper: "Speeding up Convolutional Neural Networks with Low Rank Expansions", Jaderberg, Vedaldi,
Zisserman, arXiv:1405.3866 (scheme 2: vertical filters into ``mid_channels`` maps, then horizontal
filters); the same factorisation is Inception-v3's ``1 x n`` / ``n x 1`` ("Rethinking the Inception
Architecture for Computer Vision", arXiv:1512.00567).

Gather -> compute -> scatter: two rulebook passes over the full grid with one-axis kernels: the first
rulebook has ``k`` offsets along H (``[k, C_in, C_mid]`` weight), the second ``k`` offsets along W
(``[k, C_mid, C_out]``); each sums its ``k`` per-offset GEMMs at every output site.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ._args import check_input, check_int
from ._conv import chain_macs
from ._counting import CountingMixin
from .conv2d import Conv2d


class SpatiallySeparableConv2d(CountingMixin, nn.Module):
    r"""A ``k x 1`` conv (``C_in -> C_mid``) then a ``1 x k`` conv (``C_mid -> C_out``).

    .. math::
        y = H * \phi(V * x), \qquad
        V \in \mathbb{R}^{C_\text{mid} \times C_\text{in} \times k \times 1}, \;
        H \in \mathbb{R}^{C_\text{out} \times C_\text{mid} \times 1 \times k}

    With ``activation=None`` it equals one ``k x k`` conv with the kernel
    ``W[o, c, i, j] = sum_m H[o, m, 0, j] V[m, c, i, 0]`` (rank ``C_mid`` across the spatial axes).

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): ``k`` (default: 3).
        stride (int): stride, the ``k x 1`` conv striding along H and the ``1 x k`` conv along W (default: 1).
        mid_channels (int, optional): ``C_mid`` (default: ``C_out``).
        bias (bool): a bias on each conv (default: False).
        activation (nn.Module, optional): between the two convs (default: None, a linear factorisation).
        backend (str): ``"native"`` or ``"engine"`` for both convs (default: "native").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H - 1) / s) + 1``.

    Attributes:
        vertical (Conv2d): weight ``[C_mid, C_in, k, 1]``.
        horizontal (Conv2d): weight ``[C_out, C_mid, 1, k]``.

    Parameters ``k (C_in C_mid + C_mid C_out)``, i.e. ``(k + k) C_in C_out`` when ``C_in = C_mid = C_out``
    (without biases); MACs ``H_out W k C_in C_mid + H_out W_out k C_mid C_out``.

    Example:
        >>> SpatiallySeparableConv2d(8, 8)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 mid_channels: Optional[int] = None, bias: bool = False, activation: Optional[nn.Module] = None,
                 backend: str = "native"):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        k = check_int(owner, "kernel_size", kernel_size)
        s = check_int(owner, "stride", stride)
        self.mid_channels = out_channels if mid_channels is None else check_int(owner, "mid_channels", mid_channels)
        self.vertical = Conv2d(in_channels, self.mid_channels, (k, 1), (s, 1), bias=bias, backend=backend)
        self.activation = activation if activation is not None else nn.Identity()
        self.horizontal = Conv2d(self.mid_channels, out_channels, (1, k), (1, s), bias=bias, backend=backend)

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return self.horizontal(self.activation(self.vertical(x)))

    def _sample_macs(self, height: int, width: int) -> int:
        return chain_macs((self.vertical, self.horizontal), (self.in_channels, height, width))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.vertical.kernel_size[0]}, "
                f"mid_channels={self.mid_channels}")
