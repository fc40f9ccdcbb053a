"""Cross central difference convolution (C-CDC): central differences over a horizontal-vertical or a
diagonal cross of the kernel only.

Paper: "Dual-Cross Central Difference Network for Face Anti-Spoofing", Yu et al., IJCAI 2021,
arXiv:2105.01290.

Gather -> compute -> scatter: a grid rulebook restricted to the ``2k - 1`` cross offsets (the centre
row and column, or the two diagonals); each message is ``W_k (x_k - theta x_c)``. The cross weights
are scattered into a ``k x k`` kernel with zeros elsewhere and the centre difference folds into the
centre tap, so one ordinary conv runs it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._args import check_float
from ._built_kernel import BuiltKernelConv2d, centre_corrected, odd_kernel, scatter_taps

CROSSES = ("hv", "dg")


def cross_taps(kernel_size: int, cross: str) -> torch.Tensor:
    """Flat C-order indices of the ``hv`` (centre row and column) or ``dg`` (both diagonals) cross."""
    k = kernel_size
    i, j = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    on_cross = (i == k // 2) | (j == k // 2) if cross == "hv" else (i == j) | (i + j == k - 1)
    return on_cross.flatten().nonzero().flatten()


class CrossCDConv2d(BuiltKernelConv2d):
    r"""Central difference convolution over a cross of taps ``C`` (``hv`` or ``dg``).

    .. math::
        y(p) = \sum_{k \in C} W_k \, x(p + p_k) - \theta \, x(p) \sum_{k \in C} W_k

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): odd ``k`` (default: 3).
        stride (int or tuple): (default: 1).
        dilation (int or tuple): (default: 1).
        groups (int): (default: 1).
        bias (bool): (default: False).
        theta (float): in ``[0, 1]`` (default: 0.8, the paper's choice).
        cross (str): ``"hv"`` (horizontal-vertical, C-CDC(HV)) or ``"dg"`` (diagonal, C-CDC(DG)) (default: "hv").

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` ("same" padding).

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, 2k - 1]``, the cross taps in C order.
        bias (Tensor or None): ``[C_out]``.

    Parameters ``(2k - 1) C_in C_out / G``; MACs those of the single ``k x k`` kernel that runs.

    Example:
        >>> CrossCDConv2d(3, 8, cross="dg")(torch.randn(2, 3, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride=1, dilation=1,
                 groups: int = 1, bias: bool = False, theta: float = 0.8, cross: str = "hv"):
        owner = type(self).__name__
        k = odd_kernel(owner, kernel_size)
        self.theta = check_float(owner, "theta", theta, 0.0, 1.0)
        if cross not in CROSSES:
            raise ValueError(f"{owner}: cross must be one of {CROSSES}, got {cross!r}")
        self.cross = cross
        super().__init__(in_channels, out_channels, k, stride, dilation, groups, bias, 2 * k - 1)
        self.register_buffer("taps", cross_taps(k, cross), persistent=False)

    def reparameterised_weight(self) -> Tensor:
        """``[C_out, C_in / G, k, k]``: cross weights, zeros off the cross, centre difference folded in."""
        return centre_corrected(scatter_taps(self.weight, self.taps, self.kernel_size[0]), self.theta)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", theta={self.theta}, cross={self.cross!r}"
