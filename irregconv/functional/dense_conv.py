"""Dense-grid convolution through the engine, and two classic alternative formulations.

A dense ``[B, C, *S]`` tensor is a sparse tensor whose every site is active: its rows are the sites
in C order (``[B * prod(S), C]``), the full-grid rulebook (:func:`irregconv.rulebook.build_dense_rulebook`)
pairs them, and one :func:`irregconv.engine.gather_scatter` call does the convolution. Zero padding is
the absence of pairs; other padding modes pad the tensor first (``F.pad``) and use a padding-0 rulebook.

The alternatives, both made of ordinary ``torch.nn.functional`` calls:

* :func:`space_to_batch_conv2d`: a dilated (atrous) conv at stride 1 as an undilated conv on the
  ``d_h d_w`` phase sub-grids stacked along the batch (space-to-batch / batch-to-space), as in
  "Multi-Scale Context Aggregation by Dilated Convolutions", arXiv:1511.07122, and DeepLab, arXiv:1606.00915.
* :func:`pixel_shuffle_conv_transpose2d`: a transposed conv of stride ``s`` as one ordinary conv with
  ``C_out s^2`` outputs (the kernel zero-padded to a multiple of ``s`` and split by phase) followed by
  depth-to-space, as in "Is the deconvolution layer the same as a convolutional layer?", arXiv:1609.07009.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor

from ..engine import gather_scatter
from ..rulebook import Rulebook, build_dense_rulebook


def dense_conv_rulebook(spatial_shape: Sequence[int], batch_size: int, kernel_size: Sequence[int],
                        stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                        transposed: bool = False, output_padding: Optional[Sequence[int]] = None,
                        device=None) -> Rulebook:
    """Full-grid rulebook of a convolution (or a transposed one) on a ``[B, *S]`` grid.

    A transposed conv's rulebook is the transpose of the forward conv from its output grid
    (``(S - 1) s - 2 p + d (k - 1) + output_padding + 1`` per axis) back to its input grid.
    """
    if not transposed:
        return build_dense_rulebook(spatial_shape, batch_size, kernel_size, stride, padding, dilation, device=device)
    op = output_padding or (0,) * len(spatial_shape)
    out_shape = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1
                 for n, k, s, p, d, o in zip(spatial_shape, kernel_size, stride, padding, dilation, op)]
    forward = build_dense_rulebook(out_shape, batch_size, kernel_size, stride, padding, dilation, device=device)
    return forward.transpose()


def engine_weight(weight: Tensor, groups: int, transposed: bool = False) -> Tensor:
    """Torch's weight -> the engine's grouped ``[K, G, C_in/G, C_out/G]`` (K = taps in C order).

    Args:
        weight (Tensor): conv ``[C_out, C_in/G, *k]`` or, with ``transposed``, ``[C_in, C_out/G, *k]``.
    """
    ks = weight.shape[2:]
    dims = len(ks)
    box = weight.reshape(groups, weight.size(0) // groups, weight.size(1), *ks)
    # conv boxes are [G, C_out/G, C_in/G, *k], transposed ones [G, C_in/G, C_out/G, *k]
    order = (1, 2) if transposed else (2, 1)
    box = box.permute(*range(3, 3 + dims), 0, *order)
    return box.reshape(-1, *box.shape[dims:])


def dense_conv(input: Tensor, weight: Tensor, bias: Optional[Tensor], rulebook: Rulebook, groups: int = 1,
               transposed: bool = False) -> Tensor:
    """Convolution of a dense tensor through the engine: rows -> ``gather_scatter`` -> grid.

    Args:
        input (Tensor): ``[B, C_in, *S]`` (already padded when the padding mode is not zeros).
        weight (Tensor): torch's layout, ``[C_out, C_in/G, *k]`` (``[C_in, C_out/G, *k]`` if ``transposed``).
        bias (Tensor, optional): ``[C_out]``.
        rulebook (Rulebook): from :func:`dense_conv_rulebook` for this input's shape.

    Shapes:
        input ``[B, C_in, *S]`` -> ``[B, C_out, *S_out]`` with ``S_out = rulebook.geometry.out_spatial_shape``
        (the in-spatial shape for a transposed rulebook).
    """
    batch, channels = input.shape[:2]
    rows = input.movedim(1, -1).reshape(-1, channels)
    out = gather_scatter(rows, engine_weight(weight, groups, transposed), rulebook, None, bias)
    return out.reshape(batch, *rulebook.geometry.out_spatial_shape, out.size(1)).movedim(-1, 1)


def space_to_batch_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], dilation: Sequence[int],
                          groups: int = 1) -> Tensor:
    """A stride-1, padding-0 dilated conv as an undilated conv on the stacked phase sub-grids.

    Output row ``r + d m`` only reads input rows ``r + d (m + j)``: each of the ``d_h d_w`` phases is an
    ordinary conv of the phase's sub-grid. The input is zero-extended to a multiple of ``d`` (the
    extra outputs are cropped), phases go to the batch, one ``F.conv2d`` runs, and they come back.

    Shapes:
        input ``[B, C_in, H, W]`` (already padded) -> ``[B, C_out, H - d_h (k_h - 1), W - d_w (k_w - 1)]``.
    """
    batch, channels, height, width = input.shape
    dh, dw = dilation
    kh, kw = weight.shape[2:]
    h_out, w_out = height - dh * (kh - 1), width - dw * (kw - 1)
    hp, wp = -(-height // dh), -(-width // dw)
    x = F.pad(input, (0, wp * dw - width, 0, hp * dh - height))
    x = x.reshape(batch, channels, hp, dh, wp, dw).permute(3, 5, 0, 1, 2, 4).reshape(dh * dw * batch, channels, hp, wp)
    y = F.conv2d(x, weight, bias, 1, 0, 1, groups)
    c_out, ho, wo = y.shape[1:]
    y = y.reshape(dh, dw, batch, c_out, ho, wo).permute(2, 3, 4, 0, 5, 1).reshape(batch, c_out, ho * dh, wo * dw)
    return y[:, :, :h_out, :w_out]


def pixel_shuffle_conv_transpose2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
                                   padding: Sequence[int], output_padding: Sequence[int], groups: int = 1) -> Tensor:
    """A transposed conv (dilation 1) as one ordinary conv with ``C_out s_h s_w`` outputs + pixel shuffle.

    With ``o + p = s q + r`` and ``k = s j + r``, output phase ``r`` is
    ``z_r[q] = sum_j x[q - j] W[s j + r]``: an ordinary (full) conv of ``x`` with the flipped
    sub-kernel of the taps ``r, r + s, ...`` (the kernel zero-padded to ``J = ceil(k / s)`` taps per
    phase). The ``s_h s_w`` phases are the channels of one conv; depth-to-space interleaves them and
    the result is cropped by ``p``.

    Args:
        weight (Tensor): ``[C_in, C_out/G, k_h, k_w]`` (``conv_transpose2d``'s layout).

    Shapes:
        input ``[B, C_in, H, W]`` -> ``[B, C_out, (H - 1) s - 2 p + k + output_padding, ...]``.
    """
    c_in, c_out_g, kh, kw = weight.shape
    sh, sw = stride
    jh, jw = -(-kh // sh), -(-kw // sw)
    w = F.pad(weight, (0, jw * sw - kw, 0, jh * sh - kh))
    w = w.reshape(groups, c_in // groups, c_out_g, jh, sh, jw, sw).flip(3, 5)
    w = w.permute(0, 2, 4, 6, 1, 3, 5).reshape(groups * c_out_g * sh * sw, c_in // groups, jh, jw)
    # one extra zero row/column on the right so that the last phase rows exist when output_padding > 0
    z = F.conv2d(F.pad(input, (jw - 1, jw, jh - 1, jh)), w, None, 1, 0, 1, groups)
    y = _depth_to_space(z, sh, sw)
    height, width = input.shape[2:]
    h_out = (height - 1) * sh - 2 * padding[0] + kh + output_padding[0]
    w_out = (width - 1) * sw - 2 * padding[1] + kw + output_padding[1]
    y = y[:, :, padding[0]:padding[0] + h_out, padding[1]:padding[1] + w_out]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def _depth_to_space(z: Tensor, sh: int, sw: int) -> Tensor:
    """``F.pixel_shuffle`` with factors per axis: ``[B, C s_h s_w, H, W]`` -> ``[B, C, H s_h, W s_w]``."""
    batch, channels, height, width = z.shape
    c = channels // (sh * sw)
    return z.reshape(batch, c, sh, sw, height, width).permute(0, 1, 4, 2, 5, 3).reshape(batch, c, height * sh,
                                                                                        width * sw)
