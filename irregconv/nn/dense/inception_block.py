"""Inception block: parallel branches of different receptive fields, concatenated along channels.

Papers: v1, "Going Deeper with Convolutions" (GoogLeNet), Szegedy et al., arXiv:1409.4842 (Fig. 2b:
1x1, 1x1 -> 3x3, 1x1 -> 5x5, 3x3 max pool -> 1x1); v3, "Rethinking the Inception Architecture for Computer
Vision", Szegedy et al., arXiv:1512.00567 (Fig. 6: ``n x n`` factorised into ``1 x n`` then ``n x 1``,
batch norm after every conv, average pooling).

Gather -> compute -> scatter: every branch is a chain of rulebook passes over the same full grid (the
1x1 reductions use the one-offset identity rulebook, the ``1 x n`` / ``n x 1`` convs one-axis
rulebooks), and the branches scatter into disjoint column ranges of the output rows (the concatenation).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ._args import check_divisible, check_input, check_int, check_odd
from ._counting import CountingMixin

Kernel = Tuple[int, int]


class ConvUnit(nn.Sequential):
    """``Conv2d`` ("same" padding) -> [``BatchNorm2d`` (eps 1e-3, as in Inception-v3)] -> ``ReLU``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Kernel, batch_norm: bool):
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        layers: List[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                                             bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=1e-3))
        super().__init__(*layers, nn.ReLU())


class InceptionBlock(CountingMixin, nn.Module):
    r"""Inception block, version 1 (GoogLeNet) or 3 (``1 x n`` / ``n x 1`` factorisation).

    Branch widths follow the papers' first blocks: v1 (inception 3a: 64, 128, 32, 32 of 256) uses
    ``C_out / 4``, ``C_out / 2``, ``C_out / 8``, ``C_out / 8`` with reductions ``3/4`` of the 3x3 and
    ``1/2`` of the 5x5 branch; v3 (Fig. 6, 17x17 grid: 192 of 768 each) uses ``C_out / 4`` per branch with
    ``mid_channels`` inside the factorised branches.

    * v1: ``[1x1, 1x1 -> kxk, 1x1 -> (k+2)x(k+2), maxpool 3x3 -> 1x1]``, conv + bias + ReLU.
    * v3: ``[1x1, 1x1 -> 1xn -> nx1, 1x1 -> 1xn -> nx1 -> 1xn -> nx1, avgpool 3x3 -> 1x1]``, conv + BN + ReLU.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``, the concatenated width: a multiple of 16 (v1, so that the 5x5
            reduction ``C_out / 16`` is whole) or 4 (v3).
        kernel_size (int): odd ``k`` (v1) or ``n`` (v3) (default: 3; GoogLeNet's 3 and 5, Inception-v3's
            Fig. 6 uses ``n = 7``).
        version (int): 1 or 3 (default: 1).
        mid_channels (int, optional): v3 width inside the factorised branches (default: ``C_out / 4``).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H, W]`` (the concatenation of the branches).

    Attributes:
        branches (nn.ModuleList): four ``nn.Sequential``; the last starts with its pooling layer.

    Parameters: the sum of the branch convs' ``k_h k_w C C'`` (plus biases in v1, batch-norm affine in
    v3); MACs ``H W`` times the sum of the conv weights' sizes (pooling not counted).

    Example:
        >>> InceptionBlock(16, 32, version=3)(torch.randn(2, 16, 9, 9)).shape
        torch.Size([2, 32, 9, 9])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, version: int = 1,
                 mid_channels: Optional[int] = None):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = check_int(owner, "in_channels", in_channels)
        self.out_channels = check_int(owner, "out_channels", out_channels)
        self.kernel_size = check_odd(owner, "kernel_size", kernel_size, "same padding")
        if version not in (1, 3):
            raise ValueError(f"{owner}: version must be 1 or 3, got {version!r}")
        self.version = version
        check_divisible(owner, "out_channels", out_channels, 16 if version == 1 else 4, "the branch split")
        c = in_channels
        if version == 1:
            self.mid_channels = None
            b1, b3, b5, bp = out_channels // 4, out_channels // 2, out_channels // 8, out_channels // 8
            k, k5 = (kernel_size, kernel_size), (kernel_size + 2, kernel_size + 2)
            chains: Sequence[Sequence[Tuple[int, int, Kernel]]] = (
                [(c, b1, (1, 1))],
                [(c, 3 * b3 // 4, (1, 1)), (3 * b3 // 4, b3, k)],
                [(c, b5 // 2, (1, 1)), (b5 // 2, b5, k5)],
                [(c, bp, (1, 1))])
            pool: nn.Module = nn.MaxPool2d(3, 1, 1)
        else:
            width = out_channels // 4
            m = width if mid_channels is None else check_int(owner, "mid_channels", mid_channels)
            self.mid_channels = m
            row, col = (1, kernel_size), (kernel_size, 1)
            chains = ([(c, width, (1, 1))],
                      [(c, m, (1, 1)), (m, m, row), (m, width, col)],
                      [(c, m, (1, 1)), (m, m, row), (m, m, col), (m, m, row), (m, width, col)],
                      [(c, width, (1, 1))])
            pool = nn.AvgPool2d(3, 1, 1)
        units = [[ConvUnit(i, o, kk, batch_norm=version == 3) for i, o, kk in chain] for chain in chains]
        self.branches = nn.ModuleList([nn.Sequential(*units[0]), nn.Sequential(*units[1]), nn.Sequential(*units[2]),
                                       nn.Sequential(pool, *units[3])])

    def forward(self, x: Tensor) -> Tensor:
        check_input(type(self).__name__, x, self.in_channels)
        return torch.cat([branch(x) for branch in self.branches], dim=1)

    def _sample_macs(self, height: int, width: int) -> int:
        return height * width * sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Conv2d))

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, version={self.version}"
        return s if self.mid_channels is None else s + f", mid_channels={self.mid_channels}"
