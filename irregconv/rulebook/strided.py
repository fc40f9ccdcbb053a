"""Regular (strided) sparse convolution rulebook, spconv's definition of output sites."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..hashing import pack_keys, unpack_keys
from .region import KernelRegion
from .rulebook import Geometry, Rulebook, neighbor_map_buffer, pointer_from_counts, rulebook_from_neighbors
from .._numba import cpu_kernels, kernels, native_kernels


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


def _axis_taps(region: KernelRegion) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct tap values of each axis: ``axis_taps [D, U]`` (padded), ``axis_counts [D]``, and
    ``tap_of``: the tap of each combination of per-axis value indices (flattened in C order), or -1."""
    taps = region.taps.numpy()
    per_axis = [np.unique(taps[:, a], return_inverse=True) for a in range(taps.shape[1])]
    axis_counts = np.array([len(values) for values, _ in per_axis], dtype=np.int64)
    axis_taps = np.zeros((taps.shape[1], axis_counts.max()), dtype=np.int64)
    for a, (values, _) in enumerate(per_axis):
        axis_taps[a, :len(values)] = values
    flat = np.ravel_multi_index(tuple(inverse.reshape(-1) for _, inverse in per_axis), tuple(axis_counts))
    tap_of = np.full(int(np.prod(axis_counts)), -1, dtype=np.int64)
    tap_of[flat] = np.arange(taps.shape[0])
    return tap_of, axis_taps, axis_counts


def candidates(coords: Tensor, region: KernelRegion, stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], out_shape: Sequence[int], transposed: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Every (tap, input) that reaches an output site.

    Strided: ``o = (x + padding - tap * dilation) / stride`` when that divides exactly; transposed:
    ``o = x * stride - padding + tap * dilation``; valid when inside ``out_shape``.

    Returns:
        ``(keys [V], inputs [V], counts [K])``: the output site's key over ``(batch, *out_shape)`` and the
        input row of each candidate, grouped by tap (``counts`` per tap), inputs ascending within a tap.
    """
    dims = coords.size(1) - 1 if coords.dim() == 2 else -1
    if not (region.dims == dims == len(stride) == len(padding) == len(dilation) == len(out_shape)):
        raise ValueError(f"candidates: coords [N, 1 + D] ({list(coords.shape)}), the kernel region ({region.dims} "
                         f"axes), stride {list(stride)}, padding {list(padding)}, dilation {list(dilation)} and the "
                         f"output shape {list(out_shape)} must agree on D")
    path = cpu_kernels(coords)
    if path != "torch":
        tap_of, axis_taps, axis_counts = _axis_taps(region)
        blocks = 8 * torch.get_num_threads()
        if path == "native":
            return native_kernels("rulebook").candidate_pairs(
                coords, *(torch.from_numpy(a) for a in (tap_of, axis_taps, axis_counts)), stride, padding, dilation,
                out_shape, transposed, region.volume, blocks)
        as_array = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        found = kernels("irregconv.rulebook._numba_kernels").candidate_pairs(
            coords.contiguous().numpy(), tap_of, axis_taps, axis_counts, as_array(stride), as_array(padding),
            as_array(dilation), as_array(out_shape), transposed, region.volume, blocks)
        return tuple(torch.from_numpy(a) for a in found)
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
    inputs = valid.nonzero()[:, 1]
    return keys[valid], inputs, valid.sum(dim=1)


def rulebook_to_new_sites(coords: Tensor, found: Tuple[Tensor, Tensor, Tensor], out_shape: Sequence[int],
                          geometry: Geometry):
    """Output sites are every candidate's site; pairs link each input to the sites it reaches.

    Args:
        coords (Tensor): ``[N, 1 + D]`` input sites.
        found: ``(keys [V], inputs [V], counts [K])`` from :func:`candidates`.

    Returns:
        (Rulebook, Tensor): the rulebook and the output sites ``[N_out, 1 + D]`` int32, sorted by
        (batch, *spatial) so the order never depends on thread scheduling.
    """
    keys, inputs, counts = found
    path = cpu_kernels(keys)
    if path != "torch":
        # candidates radix-sorted, ranked and scattered in parallel: the serial hash-and-argsort this
        # replaced took 13 of the 19 ms of a stride-2 layer on a 41k-voxel KITTI scan
        key_bound = (int(coords[:, 0].max()) + 1 if coords.size(0) else 1) * int(np.prod(out_shape))
        if path == "native":
            module = native_kernels("rulebook")
            sorted_keys, order = module.argsort_keys(keys, key_bound)
            rank, unique_keys = module.rank_sorted(sorted_keys)
            outputs, ascending = module.candidate_outputs(rank, order, counts)
        else:
            module = kernels("irregconv.rulebook._numba_kernels")
            sorted_keys, order = module.argsort_keys(keys.numpy(), key_bound)
            rank, unique_keys = module.rank_sorted(sorted_keys)
            outputs, ascending = module.candidate_outputs(rank, order, counts.numpy())
            rank, order, unique_keys, outputs = (torch.from_numpy(a) for a in (rank, order, unique_keys, outputs))
        out_sites = unpack_keys(unique_keys, out_shape)
        if ascending:
            # sorted input sites: each tap's candidates already are its pairs in output order (no neighbour map)
            return Rulebook(in_idx=inputs, out_idx=outputs, offset_ptr=pointer_from_counts(counts),
                            num_in=coords.size(0), num_out=unique_keys.numel(), geometry=geometry), out_sites
        neighbors = neighbor_map_buffer("strided", counts.numel(), unique_keys.numel())
        offsets = torch.repeat_interleave(torch.arange(counts.numel()), counts)
        if path == "native":
            module.fill_new_neighbors(rank, order, offsets, inputs, neighbors)
        else:
            module.fill_new_neighbors(*(t.numpy() for t in (rank, order, offsets, inputs, neighbors)))
        return rulebook_from_neighbors(neighbors, coords.size(0), geometry), out_sites
    offsets = torch.repeat_interleave(torch.arange(counts.numel(), device=keys.device), counts)
    unique_keys = torch.unique(keys, sorted=True)
    neighbors = torch.full((counts.numel(), unique_keys.numel()), -1, dtype=torch.long, device=keys.device)
    neighbors[offsets, torch.searchsorted(unique_keys, keys)] = inputs
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
    found = candidates(coords, region, stride, padding, dilation, out_shape, transposed=False)
    return rulebook_to_new_sites(coords, found, out_shape, geometry)
