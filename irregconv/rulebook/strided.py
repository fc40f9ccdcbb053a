"""Regular (strided) sparse convolution rulebook, spconv's definition of output sites."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..hashing import pack_keys, unpack_keys
from .region import KernelRegion
from .rulebook import Geometry, Rulebook, rulebook_from_pairs


def conv_output_shape(spatial_shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int], owner: str = "SparseConv") -> Tuple[int, ...]:
    """``floor((S + 2p - d (k - 1) - 1) / s) + 1`` per axis, as torch's ``Conv3d``.

    Raises:
        ValueError: if an axis collapses to zero size, naming the axis and the geometry.
    """
    out = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, k, st, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation))
    bad = [a for a, o in enumerate(out) if o <= 0]
    if bad:
        a = bad[0]
        raise ValueError(
            f"{owner}: output size on spatial axis {a} would be {out[a]} (input {spatial_shape[a]}, "
            f"kernel_size {kernel_size[a]}, stride {stride[a]}, padding {padding[a]}, dilation {dilation[a]}); "
            f"use a smaller kernel/stride/dilation or more padding so that every axis keeps >= 1 site")
    return out


def rulebook_to_new_sites(coords: Tensor, candidates: Tensor, valid: Tensor, out_shape: Sequence[int],
                          batch_size: int, geometry: Geometry) -> Tuple[Rulebook, Tensor]:
    """Output sites are every valid candidate; pairs link each input to its candidates.

    Args:
        coords (Tensor): ``[N, 1 + D]`` input sites.
        candidates (Tensor): ``[K, N, D]`` int64 output site reached from input ``i`` by offset ``k``.
        valid (Tensor): ``[K, N]`` bool, candidate exists and lies in ``out_shape``.

    Returns:
        (Rulebook, Tensor): the rulebook and the output sites ``[N_out, 1 + D]`` int32, sorted by
        (batch, *spatial) so the order never depends on thread scheduling.
    """
    k_idx, in_idx = valid.nonzero(as_tuple=True)
    sites = torch.cat([coords[in_idx, :1].long(), candidates[k_idx, in_idx]], dim=1)
    keys = pack_keys(sites, out_shape, batch_size, check=False)
    unique_keys, out_idx = torch.unique(keys, sorted=True, return_inverse=True)
    rulebook = rulebook_from_pairs(k_idx, in_idx, out_idx, candidates.size(0), coords.size(0),
                                   unique_keys.numel(), geometry)
    return rulebook, unpack_keys(unique_keys, out_shape).to(coords.device)


def build_strided_rulebook(coords: Tensor, spatial_shape: Sequence[int], batch_size: int, region: KernelRegion,
                           stride: Sequence[int], padding: Sequence[int],
                           dilation: Sequence[int]) -> Tuple[Rulebook, Tensor]:
    """Rulebook of a regular sparse convolution; output sites are every site some kernel tap reaches.

    Input ``i`` feeds output ``o`` through tap ``t`` when ``coords[i] = o * stride - padding + t * dilation``
    (spconv's and torch's definition). This is spconv's output set, not MinkowskiEngine's
    floor-by-stride set.

    Returns:
        (Rulebook, Tensor): rulebook and output sites ``[N_out, 1 + D]`` int32 sorted by key; the output
        spatial shape is ``rulebook.geometry.out_spatial_shape``.
    """
    out_shape = conv_output_shape(spatial_shape, region.kernel_size, stride, padding, dilation)
    geometry = Geometry("strided", region_key=region.key, stride=tuple(stride), padding=tuple(padding),
                        dilation=tuple(dilation), in_spatial_shape=tuple(spatial_shape),
                        out_spatial_shape=out_shape)
    dev = coords.device
    numer = (coords[:, 1:].long().unsqueeze(0) + torch.tensor(padding, device=dev)
             - (region.taps * torch.tensor(dilation)).to(dev).unsqueeze(1))
    s = torch.tensor(stride, device=dev)
    out = torch.div(numer, s, rounding_mode="floor")
    valid = ((numer % s == 0) & (numer >= 0) & (out < torch.tensor(out_shape, device=dev))).all(dim=2)
    return rulebook_to_new_sites(coords, out, valid, out_shape, batch_size, geometry)
