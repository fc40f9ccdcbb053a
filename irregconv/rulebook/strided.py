"""Regular (strided) sparse convolution rulebook, spconv's definition of output sites."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..hashing import pack_keys, unpack_keys
from .region import KernelRegion
from .rulebook import Geometry, Rulebook, neighbor_map_buffer, rulebook_from_neighbors, use_numba
from .._numba import kernels


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


def candidate_keys(coords: Tensor, region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
                   dilation: Sequence[int], out_shape: Sequence[int], transposed: bool) -> Tensor:
    """``[K, N]`` int64 key (over ``(batch, *out_shape)``) of the output site input ``i`` reaches through tap
    ``k``, or -1 when it reaches none.

    Strided: ``o = (x + padding - tap * dilation) / stride`` when that divides exactly; transposed:
    ``o = x * stride - padding + tap * dilation``; valid when inside ``out_shape``.
    """
    if use_numba(coords):
        _numba_kernels = kernels("irregconv.rulebook._numba_kernels")
        as_array = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        keys = _numba_kernels.candidate_keys(coords.contiguous().numpy(), region.taps.numpy(), as_array(stride),
                                             as_array(padding), as_array(dilation), as_array(out_shape), transposed)
        return torch.from_numpy(keys)
    dev = coords.device
    x = coords[:, 1:].long().unsqueeze(0)
    tap = (region.taps * torch.tensor(dilation)).to(dev).unsqueeze(1)
    s, p = torch.tensor(stride, device=dev), torch.tensor(padding, device=dev)
    if transposed:
        out = x * s - p + tap
        valid = (out >= 0).all(dim=2)
    else:
        numer = x + p - tap
        out = torch.div(numer, s, rounding_mode="floor")
        valid = ((numer % s == 0) & (numer >= 0)).all(dim=2)
    valid &= (out < torch.tensor(out_shape, device=dev)).all(dim=2)
    sites = torch.cat([coords[:, :1].long().expand(out.size(0), -1, -1), out.clamp(min=0)], dim=2)
    keys = pack_keys(sites.reshape(-1, sites.size(2)), out_shape, 1 << 20, check=False).reshape(valid.shape)
    return torch.where(valid, keys, torch.full_like(keys, -1))


def rulebook_to_new_sites(coords: Tensor, keys: Tensor, out_shape: Sequence[int], geometry: Geometry):
    """Output sites are every valid candidate; pairs link each input to its candidates.

    Args:
        coords (Tensor): ``[N, 1 + D]`` input sites.
        keys (Tensor): ``[K, N]`` candidate output keys from :func:`candidate_keys` (-1 = none).

    Returns:
        (Rulebook, Tensor): the rulebook and the output sites ``[N_out, 1 + D]`` int32, sorted by
        (batch, *spatial) so the order never depends on thread scheduling.
    """
    if use_numba(keys):
        # candidates compacted in parallel, sorted by torch, ranked and scattered in parallel: the serial
        # hash-and-argsort this replaced took 13 of the 19 ms of a stride-2 layer on a 41k-voxel KITTI scan
        _numba_kernels = kernels("irregconv.rulebook._numba_kernels")
        values, inputs, counts = (torch.from_numpy(a) for a in
                                  _numba_kernels.compact_neighbors(keys.contiguous().numpy()))
        offsets = torch.repeat_interleave(torch.arange(keys.size(0)), counts)
        sorted_keys, order = torch.sort(values, stable=True)
        rank, unique_keys = _numba_kernels.rank_sorted(sorted_keys.numpy())
        unique_keys = torch.from_numpy(unique_keys)
        neighbors = neighbor_map_buffer("strided", keys.size(0), unique_keys.numel())
        _numba_kernels.fill_new_neighbors(rank, order.numpy(), offsets.numpy(), inputs.numpy(), neighbors.numpy())
    else:
        valid = keys >= 0
        unique_keys = torch.unique(keys[valid], sorted=True)
        k_idx, in_idx = valid.nonzero(as_tuple=True)
        neighbors = torch.full((keys.size(0), unique_keys.numel()), -1, dtype=torch.long, device=keys.device)
        neighbors[k_idx, torch.searchsorted(unique_keys, keys[k_idx, in_idx])] = in_idx
    rulebook = rulebook_from_neighbors(neighbors, coords.size(0), geometry)
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
    keys = candidate_keys(coords, region, stride, padding, dilation, out_shape, transposed=False)
    return rulebook_to_new_sites(coords, keys, out_shape, geometry)
