"""Pixel difference convolution (PDC): the kernel weights pixel differences instead of pixels.

Paper: "Pixel Difference Networks for Efficient Edge Detection" (PiDiNet), Su et al., ICCV 2021,
arXiv:2108.07009.

Gather -> compute -> scatter: each offset's message is ``W_k (x_a - x_b)``, two gathers per pair:
``cv`` is a vanilla conv (``x_b = 0``), ``cd`` takes ``b`` the centre, ``ad`` the angular neighbour on
the 3x3 ring (clockwise), ``rd`` takes ``a`` on the 5x5 outer ring and ``b`` the 3x3 ring pixel on the
same ray. Being linear, each mode folds into one ordinary kernel (3x3, or 5x5 for ``rd``), which the
forward pass runs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._built_kernel import BuiltKernelConv2d, centre_corrected, odd_kernel, scatter_taps

MODES = ("cv", "cd", "ad", "rd")
# ad: tap j of the 3x3 kernel pairs with tap ANGULAR_PARTNER[j] (its clockwise neighbour on the ring;
# the centre with itself, a zero difference)
ANGULAR_PARTNER = (1, 2, 5, 0, 4, 8, 3, 6, 7)
# rd: 5x5 outer-ring taps and the 3x3-ring taps (in 5x5 flat indices) on the same rays, in matching order
RADIAL_OUTER = (0, 2, 4, 10, 14, 20, 22, 24)
RADIAL_INNER = (6, 7, 8, 11, 13, 16, 17, 18)


class PixelDifferenceConv2d(BuiltKernelConv2d):
    r"""Pixel difference convolution in one of PiDiNet's four modes.

    .. math::
        y(p) = \sum_k W_k \, (x(p + a_k) - x(p + b_k))

    with ``(a_k, b_k)``: ``cv`` ``(p_k, -)``; ``cd`` ``(p_k, 0)``; ``ad`` ``(p_k, p_{\pi(k)})`` with ``pi``
    the clockwise neighbour on the 3x3 ring; ``rd`` ``(2 r_k, r_k)`` for the eight ring directions ``r_k``.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): odd ``k``; 3 for ``ad`` and ``rd`` (default: 3).
        mode (str): ``"cv"``, ``"cd"``, ``"ad"`` or ``"rd"`` (default: "cd").
        stride (int or tuple): (default: 1).
        dilation (int or tuple): (default: 1).
        groups (int): (default: 1).
        bias (bool): (default: False, as in PiDiNet).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` ("same" padding; ``2 d`` for ``rd``'s 5x5 kernel).

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k^2]``, or ``[C_out, C_in / G, 8]`` for ``rd`` (one per ray;
            PiDiNet's code keeps a ninth, unused one).
        bias (Tensor or None): ``[C_out]``.

    Parameters ``k^2 C_in C_out / G`` (``8 C_in C_out / G`` for ``rd``); MACs those of the single kernel
    that runs (``25 C_in C_out / G`` per site for ``rd``).

    Example:
        >>> PixelDifferenceConv2d(3, 8, mode="rd")(torch.randn(2, 3, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, mode: str = "cd", stride=1,
                 dilation=1, groups: int = 1, bias: bool = False):
        owner = type(self).__name__
        if mode not in MODES:
            raise ValueError(f"{owner}: mode must be one of {MODES}, got {mode!r}")
        k = odd_kernel(owner, kernel_size)
        if mode in ("ad", "rd") and k != 3:
            raise ValueError(f"{owner}: mode={mode!r} is defined on the 3x3 ring, so kernel_size must be 3, got {k}")
        self.mode = mode
        if mode == "rd":
            super().__init__(in_channels, out_channels, 5, stride, dilation, groups, bias, len(RADIAL_OUTER))
        else:
            super().__init__(in_channels, out_channels, k, stride, dilation, groups, bias, k * k)

    def reparameterised_weight(self) -> Tensor:
        """``[C_out, C_in / G, k, k]`` (5x5 for ``rd``) equal to the mode's difference formula."""
        w = self.weight
        if self.mode == "rd":
            return (scatter_taps(w, torch.tensor(RADIAL_OUTER), 5) - scatter_taps(w, torch.tensor(RADIAL_INNER), 5))
        k = self.kernel_size[0]
        kernel = w.reshape(*w.shape[:2], k, k)
        if self.mode == "cd":
            return centre_corrected(kernel, 1.0)
        if self.mode == "ad":
            # sum_j W_j (x_j - x_{partner(j)}): pixel i receives -W_j from every j whose partner is i
            partner = torch.tensor(ANGULAR_PARTNER, device=w.device)
            return (w - torch.zeros_like(w).index_add(2, partner, w)).reshape(kernel.shape)
        return kernel

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"
