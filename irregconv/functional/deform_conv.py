"""Deformable convolution (v1 and modulated v2) in plain torch: bilinear gather, then one grouped GEMM.

Written without ``torchvision.ops.deform_conv2d`` (it cannot be imported beside this torch build) and
following its conventions: offsets ``[B, 2 G_d K, H_out, W_out]`` hold ``(dy, dx)`` per deformable group
and tap (tap-major within a group), masks ``[B, G_d K, H_out, W_out]``, zero outside the image.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor


def bilinear_gather(input: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Bilinear samples of ``input`` at real positions, zero outside the image.

    Each sample is a weighted sum of its four integer neighbours (weights ``(1 - ly)(1 - lx)``,
    ``(1 - ly) lx``, ``ly (1 - lx)``, ``ly lx``); neighbours outside ``[0, H) x [0, W)`` contribute 0.

    Args:
        input (Tensor): ``[B, G, C, H, W]``.
        y, x (Tensor): ``[B, G, L]`` row and column positions.

    Returns:
        Tensor: ``[B, G, C, L]``.
    """
    batch, groups, channels, height, width = input.shape
    flat = input.reshape(batch, groups, channels, height * width)
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0
    out = 0
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yc, xc = y0 + dy, x0 + dx
            valid = (yc >= 0) & (yc < height) & (xc >= 0) & (xc < width)
            index = (yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1)).long()
            values = flat.gather(3, index.unsqueeze(2).expand(-1, -1, channels, -1))
            out = out + values * (wy * wx * valid).unsqueeze(2)
    return out


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                  stride: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1),
                  groups: int = 1, mask: Optional[Tensor] = None) -> Tensor:
    r"""Deformable convolution: each tap samples the input at its grid position plus a learned offset.

    .. math::
        y_{b, o}(p) = \sum_k m_k(p) \sum_c W_{o, c, k} \, x_{b, c}(p s - \text{pad} + k d + \Delta p_k(p))
        + \text{bias}_o

    with ``x(.)`` bilinear interpolation (zero outside) and ``m = 1`` without ``mask`` (v1).

    Args:
        input (Tensor): ``[B, C_in, H, W]``.
        offset (Tensor): ``[B, 2 G_d K, H_out, W_out]``, ``(dy, dx)`` per deformable group and tap.
        weight (Tensor): ``[C_out, C_in / G, k_h, k_w]``.
        bias (Tensor, optional): ``[C_out]``.
        groups (int): ``G`` of the weight (default: 1).
        mask (Tensor, optional): ``[B, G_d K, H_out, W_out]`` modulation (v2) (default: None).

    Shapes:
        -> ``[B, C_out, H_out, W_out]``, ``H_out = floor((H + 2 pad - d (k - 1) - 1) / s) + 1``;
        ``G_d = offset.size(1) / (2 K)`` must divide ``C_in``.
    """
    batch, c_in, height, width = input.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    h_out, w_out = offset.shape[2:]
    offset_groups = offset.size(1) // (2 * taps)
    sites = h_out * w_out
    # grid position of every (tap, output) pair, [K, L]
    oy = torch.arange(h_out, device=input.device, dtype=input.dtype) * stride[0] - padding[0]
    ox = torch.arange(w_out, device=input.device, dtype=input.dtype) * stride[1] - padding[1]
    ty = torch.arange(kh, device=input.device, dtype=input.dtype).repeat_interleave(kw) * dilation[0]
    tx = torch.arange(kw, device=input.device, dtype=input.dtype).repeat(kh) * dilation[1]
    base_y = (ty[:, None, None] + oy[None, :, None]).expand(taps, h_out, w_out).reshape(taps, sites)
    base_x = (tx[:, None, None] + ox[None, None, :]).expand(taps, h_out, w_out).reshape(taps, sites)
    off = offset.reshape(batch, offset_groups, taps, 2, sites)
    y = (base_y + off[:, :, :, 0]).reshape(batch, offset_groups, taps * sites)
    x = (base_x + off[:, :, :, 1]).reshape(batch, offset_groups, taps * sites)
    cols = bilinear_gather(input.reshape(batch, offset_groups, c_in // offset_groups, height, width), y, x)
    cols = cols.reshape(batch, c_in, taps, sites)
    if mask is not None:
        mask = mask.reshape(batch, offset_groups, 1, taps, sites).expand(-1, -1, c_in // offset_groups, -1, -1)
        cols = cols * mask.reshape(batch, c_in, taps, sites)
    # the compute step: one [C_out/G, C_in/G K] GEMM per group over the gathered columns
    cols = cols.reshape(batch, groups, c_in // groups, taps, sites)
    w = weight.reshape(groups, c_out // groups, c_in // groups, taps)
    out = torch.einsum("bgckl,gock->bgol", cols, w).reshape(batch, c_out, h_out, w_out)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)
