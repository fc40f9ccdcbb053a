"""Voxelization: points -> a SparseTensor of voxels, with the point-to-voxel map for devoxelizing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..hashing import pack_keys, unpack_keys

REDUCTIONS = ("mean", "sum", "max", "first", "count")
PointsLike = Union[Tensor, np.ndarray]


@dataclass
class Voxels:
    """Result of :func:`voxelize`.

    Attributes:
        feats (Tensor): ``[N_vox, F]`` reduced point features (``[N_vox, 1]`` for ``reduce="count"``).
        coords (Tensor): ``[N_vox, 4]`` int32 ``(batch, z, y, x)``, sorted by that key.
        spatial_shape (tuple): ``(Z, Y, X)``.
        batch_size (int): number of scans.
        point_to_voxel (Tensor): ``[N_points]`` int64 voxel row of every input point (scans concatenated
            in order), -1 for dropped points.
        num_points (Tensor): ``[N_vox]`` points that went into each voxel (after the per-voxel cap).
        dropped_nonfinite (int): points with a NaN/inf feature.
        dropped_out_of_range (int): finite points outside ``point_range``.
        dropped_over_capacity (int): points beyond ``max_points_per_voxel`` or in voxels beyond ``max_voxels``.
    """
    feats: Tensor
    coords: Tensor
    spatial_shape: tuple
    batch_size: int
    point_to_voxel: Tensor
    num_points: Tensor
    dropped_nonfinite: int
    dropped_out_of_range: int
    dropped_over_capacity: int

    def to_sparse_tensor(self):
        """The voxels as an :class:`irregconv.SparseTensor` (``feats`` on ``coords``)."""
        from ..tensor import SparseTensor
        return SparseTensor(self.feats, self.coords, self.spatial_shape, self.batch_size)

    def devoxelize(self, voxel_feats: Tensor) -> Tensor:
        """Per-point features ``[N_points, C]`` gathered from ``voxel_feats [N_vox, C]`` (zeros for dropped points)."""
        out = voxel_feats.new_zeros(self.point_to_voxel.numel(), voxel_feats.size(1))
        kept = self.point_to_voxel >= 0
        out[kept] = voxel_feats[self.point_to_voxel[kept]]
        return out


def _check_geometry(voxel_size, point_range):
    try:
        vs = [float(v) for v in voxel_size]
        pr = [float(v) for v in point_range]
    except TypeError:
        raise TypeError(f"voxelize: voxel_size must be 3 numbers (x, y, z) and point_range 6 numbers "
                        f"(x_min, y_min, z_min, x_max, y_max, z_max), got {voxel_size!r} and {point_range!r}") from None
    if len(vs) != 3 or any(not np.isfinite(v) or v <= 0 for v in vs):
        raise ValueError(f"voxelize: voxel_size must be 3 positive finite numbers (x, y, z) in metres, got {voxel_size!r}")
    if len(pr) != 6 or not all(np.isfinite(pr)):
        raise ValueError(f"voxelize: point_range must be 6 finite numbers (x_min, y_min, z_min, x_max, y_max, z_max), "
                         f"got {point_range!r}")
    for a, axis in enumerate("xyz"):
        if pr[a + 3] <= pr[a]:
            raise ValueError(f"voxelize: point_range is empty or inverted on {axis}: min {pr[a]} >= max {pr[a + 3]}; "
                             f"give (x_min, y_min, z_min, x_max, y_max, z_max) with each min < max")
    lo = np.asarray(pr[:3], dtype=np.float32)
    size = np.asarray(vs, dtype=np.float32)
    # as spconv's PointToVoxel: grid = round((max - min) / size), computed in float32
    grid = np.round((np.asarray(pr[3:], dtype=np.float32) - lo) / size).astype(np.int64)
    if (grid <= 0).any():
        raise ValueError(f"voxelize: voxel_size {voxel_size!r} is larger than point_range {point_range!r} on some axis")
    return lo, size, grid


def _as_points(points, index: int) -> Tensor:
    name = "points" if index < 0 else f"points[{index}]"
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, Tensor):
        raise TypeError(f"voxelize: {name} must be a float tensor or ndarray [N, F], got {type(points).__name__}")
    if points.dim() != 2 or points.size(1) < 3:
        raise ValueError(f"voxelize: {name} must have shape [N, F] with F >= 3 (x, y, z first), got {list(points.shape)}")
    if not points.dtype.is_floating_point:
        raise TypeError(f"voxelize: {name} must be floating point, got {points.dtype}")
    return points.float()


def voxelize(points: Union[PointsLike, Sequence[PointsLike]], voxel_size: Sequence[float],
             point_range: Sequence[float], reduce: str = "mean", max_voxels: Optional[int] = None,
             max_points_per_voxel: Optional[int] = None) -> Voxels:
    """Group points into voxels of a regular grid and reduce their features.

    The voxel of a point is ``floor((xyz - range_min) / voxel_size)`` computed in float32, exactly as
    spconv's ``PointToVoxel`` (float64 puts points on voxel boundaries elsewhere: 41,264 instead of
    41,281 voxels on KITTI frame 000000 at 0.05 x 0.05 x 0.1 m). Coordinates follow the detector
    convention ``(batch, z, y, x)`` with ``spatial_shape = (Z, Y, X)``. Voxels come sorted by that key.

    Args:
        points: one scan ``[N, F]`` (x, y, z, then any features) as a tensor or ndarray, or a list of
            scans (a batch).
        voxel_size: ``(dx, dy, dz)``, positive.
        point_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``, each min < max.
        reduce: ``"mean"``, ``"sum"``, ``"max"``, ``"first"`` (the first point in input order) or
            ``"count"`` (default: ``"mean"``).
        max_voxels: keep at most this many voxels per scan, those first reached in point order (as
            spconv); None keeps all.
        max_points_per_voxel: reduce over at most the first this many points of each voxel (as spconv's
            ``max_num_points_per_voxel``); None uses all.

    Returns:
        Voxels: features, coordinates, point-to-voxel map and the counts of dropped points (NaN/inf
        points and out-of-range points are dropped and counted, not errors).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"voxelize: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    for name, value in (("max_voxels", max_voxels), ("max_points_per_voxel", max_points_per_voxel)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"voxelize: {name} must be None or a positive int, got {value!r}")
    lo, size, grid = _check_geometry(voxel_size, point_range)
    scans = [_as_points(p, i) for i, p in enumerate(points)] if isinstance(points, (list, tuple)) \
        else [_as_points(points, -1)]
    widths = {s.size(1) for s in scans}
    if len(widths) > 1:
        raise ValueError(f"voxelize: all scans of a batch need the same number of features, got {sorted(widths)}")
    device = scans[0].device
    pts = torch.cat(scans) if len(scans) > 1 else scans[0]
    batch = torch.repeat_interleave(torch.arange(len(scans), device=device),
                                    torch.tensor([s.size(0) for s in scans], device=device))
    spatial_shape = (int(grid[2]), int(grid[1]), int(grid[0]))

    finite = torch.isfinite(pts).all(dim=1)
    cell = torch.floor((pts[:, :3] - torch.from_numpy(lo).to(device)) / torch.from_numpy(size).to(device))
    grid_t = torch.from_numpy(grid).to(device)
    inside = finite & (cell >= 0).all(dim=1) & (cell < grid_t).all(dim=1)
    kept = inside.nonzero().squeeze(1)
    zyx = cell[kept].long().flip(1)
    keys = pack_keys(torch.cat([batch[kept].unsqueeze(1), zyx], dim=1), spatial_shape, len(scans), check=False)

    # points grouped by voxel, input order kept inside each voxel (stable sort)
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    unique_keys, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    voxel_of_sorted = torch.repeat_interleave(torch.arange(unique_keys.numel(), device=device), counts)
    rank = torch.arange(order.numel(), device=device) - starts[voxel_of_sorted]
    keep_point = torch.ones_like(rank, dtype=torch.bool) if max_points_per_voxel is None else rank < max_points_per_voxel
    keep_voxel = torch.ones_like(unique_keys, dtype=torch.bool)
    if max_voxels is not None:
        first_point = kept[order[starts]]                      # earliest point of each voxel
        voxel_batch = unique_keys // int(np.prod(spatial_shape))
        for b in range(len(scans)):
            in_b = (voxel_batch == b).nonzero().squeeze(1)
            if in_b.numel() > max_voxels:
                drop = in_b[torch.argsort(first_point[in_b], stable=True)[max_voxels:]]
                keep_voxel[drop] = False
    keep_point &= keep_voxel[voxel_of_sorted]
    new_id = torch.cumsum(keep_voxel.long(), 0) - 1

    point_rows = order[keep_point]                 # rows into `kept`, grouped by voxel
    voxel_ids = new_id[voxel_of_sorted[keep_point]]
    num_voxels = int(keep_voxel.sum())
    per_voxel = torch.bincount(voxel_ids, minlength=num_voxels)
    values = pts[kept[point_rows]]
    if reduce == "count":
        feats = per_voxel.to(pts.dtype).unsqueeze(1)
    elif reduce == "first":
        feats = values[torch.cumsum(per_voxel, 0) - per_voxel]
    else:
        segment = "max" if reduce == "max" else "sum"
        feats = torch.segment_reduce(values, segment, lengths=per_voxel, unsafe=True)
        if reduce == "mean":
            feats = feats / per_voxel.unsqueeze(1).to(feats.dtype)

    point_to_voxel = torch.full((pts.size(0),), -1, dtype=torch.long, device=device)
    point_to_voxel[kept[point_rows]] = voxel_ids
    num_finite = int(finite.sum())
    return Voxels(feats=feats, coords=unpack_keys(unique_keys[keep_voxel], spatial_shape), spatial_shape=spatial_shape,
                  batch_size=len(scans), point_to_voxel=point_to_voxel, num_points=per_voxel,
                  dropped_nonfinite=pts.size(0) - num_finite, dropped_out_of_range=num_finite - kept.numel(),
                  dropped_over_capacity=kept.numel() - point_rows.numel())
