"""Circle convolution: the kernel's taps moved from the square onto circles, by bilinear resampling.

Paper: "Integrating Circle Kernels into Convolutional Neural Networks", He, Li, Yang, Huang, Hopcroft,
arXiv:2107.02451.

Gather -> compute -> scatter: a deformable-style rulebook with fixed offsets: every tap on ring ``r``
(``max(|u|, |v|) = r``) is moved to the circle of radius ``r`` along its ray, so its message is a
bilinear blend of the four grid rows around that point (fixed per-pair scales). Since the offsets are
fixed, the blends fold into an ordinary ``k x k`` kernel (``reparameterised_weight``), which the forward
pass runs; ``sampling_offsets`` gives the same layer as an explicit resampling (the tests check both).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._built_kernel import BuiltKernelConv2d, odd_kernel


def circle_points(kernel_size: int) -> Tensor:
    """``[K, 2]`` tap positions ``(dy, dx)`` relative to the centre: tap ``(u, v)`` on ring
    ``r = max(|u|, |v|)`` scaled to length ``r`` (the centre and the four axis taps of each ring stay)."""
    c = kernel_size // 2
    u, v = torch.meshgrid(torch.arange(-c, c + 1.0, dtype=torch.float64), torch.arange(-c, c + 1.0,
                                                                                         dtype=torch.float64),
                          indexing="ij")
    taps = torch.stack([u.flatten(), v.flatten()], dim=1)
    ring = taps.abs().amax(dim=1, keepdim=True)
    length = taps.norm(dim=1, keepdim=True)
    return torch.where(length > 0, taps * ring / length.clamp_min(1e-12), taps)


def bilinear_stencils(kernel_size: int) -> Tensor:
    """``[K, k, k]``: how much tap ``t``'s circle point draws from each grid position (bilinear weights)."""
    c = kernel_size // 2
    points = circle_points(kernel_size) + c
    stencils = torch.zeros(points.size(0), kernel_size, kernel_size, dtype=torch.float64)
    for t, (y, x) in enumerate(points.tolist()):
        y0, x0 = math.floor(y + 1e-12), math.floor(x + 1e-12)
        ly, lx = y - y0, x - x0
        for yc, wy in ((y0, 1 - ly), (y0 + 1, ly)):
            for xc, wx in ((x0, 1 - lx), (x0 + 1, lx)):
                if wy * wx > 0:
                    stencils[t, yc, xc] += wy * wx
    return stencils


class CircleConv2d(BuiltKernelConv2d):
    r"""Convolution with a circular kernel: tap ``t`` samples the input at ``p + c_t`` on a circle.

    .. math::
        y(p) = \sum_t W_t \, x(p + c_t) = \sum_{(i, j)} \Big(\sum_t W_t B_t(i, j)\Big) x(p + (i, j))

    with ``c_t`` the tap moved onto its ring's circle and ``B_t`` its bilinear stencil. There is no
    dilation: a dilated circle point falls between the dilated grid's taps, so the folded kernel would
    no longer be a dilated ``k x k`` one.

    Args:
        in_channels (int): ``C_in``.
        out_channels (int): ``C_out``.
        kernel_size (int): odd ``k`` (default: 3).
        stride (int or tuple): (default: 1).
        groups (int): (default: 1).
        bias (bool): (default: True).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, H_out, W_out]`` ("same" padding).

    Attributes:
        weight (Tensor): ``[C_out, C_in / G, k^2]``, one weight per circle point (taps in C order).
        bias (Tensor or None): ``[C_out]``.
        stencils (Tensor): ``[K, k, k]`` float64 (not a buffer), the bilinear weights of each circle point.

    Parameters ``k^2 C_in C_out / G (+ C_out)``; MACs those of one ``k x k`` conv.

    Example:
        >>> CircleConv2d(3, 8)(torch.randn(2, 3, 6, 5)).shape
        torch.Size([2, 8, 6, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride=1, groups: int = 1,
                 bias: bool = True):
        k = odd_kernel(type(self).__name__, kernel_size)
        super().__init__(in_channels, out_channels, k, stride, 1, groups, bias, k * k)
        # a plain float64 attribute, not a buffer: module.float() then .double() would round it to float32
        self.stencils = bilinear_stencils(k)

    def sampling_offsets(self) -> Tensor:
        """``[K, 2]`` offsets ``(dy, dx)`` from each square tap to its circle point (float64)."""
        k = self.kernel_size[0]
        c = k // 2
        u, v = torch.meshgrid(torch.arange(-c, c + 1.0), torch.arange(-c, c + 1.0), indexing="ij")
        return circle_points(k) - torch.stack([u.flatten(), v.flatten()], dim=1).double()

    def reparameterised_weight(self) -> Tensor:
        """``[C_out, C_in / G, k, k]``: ``sum_t W_t B_t``, the ordinary kernel equal to the circle kernel."""
        stencils = self.stencils.to(device=self.weight.device, dtype=self.weight.dtype)
        return torch.einsum("oct,tyx->ocyx", self.weight, stencils)
