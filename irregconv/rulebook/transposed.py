"""Generative transposed sparse convolution rulebook: every tap of every input creates an output site."""
from __future__ import annotations

from typing import Sequence, Tuple

from torch import Tensor

from .region import KernelRegion
from .rulebook import Geometry, Rulebook
from .strided import candidates, rulebook_to_new_sites


def transposed_output_shape(spatial_shape, kernel_size, stride, padding, dilation, output_padding,
                            owner: str = "SparseConvTranspose") -> Tuple[int, ...]:
    """``(S - 1) s - 2p + d (k - 1) + output_padding + 1`` per axis, as torch's ``ConvTranspose3d``."""
    out = tuple((s - 1) * st - 2 * p + d * (k - 1) + op + 1
                for s, k, st, p, d, op in zip(spatial_shape, kernel_size, stride, padding, dilation, output_padding))
    bad = [a for a, o in enumerate(out) if o <= 0]
    if bad:
        a = bad[0]
        raise ValueError(f"{owner}: output size on spatial axis {a} would be {out[a]}; reduce padding "
                         f"({padding[a]}) or increase kernel_size/stride so every axis keeps >= 1 site")
    return out


def build_transposed_rulebook(coords: Tensor, spatial_shape: Sequence[int], batch_size: int,
                              region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
                              dilation: Sequence[int],
                              output_padding: Sequence[int]) -> Tuple[Rulebook, Tensor]:
    """Rulebook of a generative transposed convolution.

    Input ``i`` feeds output ``o = coords[i] * stride - padding + t * dilation`` through tap ``t`` when
    ``o`` lies inside the output grid (the adjoint of :func:`build_strided_rulebook`, as
    ``conv_transpose3d`` is the adjoint of ``conv3d``). New sites are created.

    Returns:
        (Rulebook, Tensor): rulebook and output sites ``[N_out, 1 + D]`` int32 sorted by key.
    """
    out_shape = transposed_output_shape(spatial_shape, region.kernel_size, stride, padding, dilation,
                                        output_padding)
    geometry = Geometry("transposed", region_key=region.key, stride=tuple(stride), padding=tuple(padding),
                        dilation=tuple(dilation), output_padding=tuple(output_padding),
                        in_spatial_shape=tuple(spatial_shape), out_spatial_shape=out_shape)
    found = candidates(coords, region, stride, padding, dilation, out_shape, transposed=True)
    return rulebook_to_new_sites(coords, found, out_shape, geometry)
