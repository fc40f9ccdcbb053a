"""Voxelization: points -> voxels on a regular grid, with the point-to-voxel map for devoxelizing.

Pure torch and device-agnostic: one stable sort of packed int64 voxel keys groups the points by voxel,
and ``segment_reduce`` over the sorted runs reduces them (deterministic on every device, unlike an
atomic scatter).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..hashing.keys import key_radices

REDUCTIONS = ("mean", "sum", "max", "first", "count")
PointsLike = Union[Tensor, np.ndarray]


@dataclass(frozen=True)
class Voxels:
    """Result of :func:`voxelize`.

    Attributes:
        feats (Tensor): ``[N_vox, F]`` reduced point features in the points' dtype (``[N_vox, 1]``
            for ``reduce="count"``).
        coords (Tensor): ``[N_vox, 4]`` int32 ``(b, z, y, x)``, sorted by that key (unique rows).
        spatial_shape (tuple): ``(Z, Y, X)``.
        batch_size (int): ``B``, the number of scans.
        point_to_voxel (Tensor): ``[N_points]`` int64 voxel row of every input point (scans
            concatenated in order): also for points left out of the reduction by
            ``max_points_per_voxel`` (they lie in that voxel, as in spconv's point ids); -1 for points in
            no output voxel (non-finite, out of range, or in a voxel beyond ``max_voxels``).
        num_points (Tensor): ``[N_vox]`` int64 points reduced into each voxel (after the per-voxel cap).
        keys (Tensor): ``[N_vox]`` int64 packed keys of ``coords``, as
            :func:`irregconv.hashing.pack_keys` with ``(batch_size, *spatial_shape)`` (ascending).
        dropped_nonfinite (int): points with a NaN or inf in any column.
        dropped_out_of_range (int): finite points outside ``point_range``.
        dropped_over_capacity (int): points beyond ``max_points_per_voxel`` or in voxels beyond
            ``max_voxels``.
    """
    feats: Tensor
    coords: Tensor
    spatial_shape: Tuple[int, int, int]
    batch_size: int
    point_to_voxel: Tensor
    num_points: Tensor
    keys: Tensor
    dropped_nonfinite: int
    dropped_out_of_range: int
    dropped_over_capacity: int

    @property
    def num_voxels(self) -> int:
        return self.coords.size(0)

    def to_sparse_tensor(self):
        """The voxels as an :class:`irregconv.SparseTensor` (``feats`` on ``coords``, unique by construction,
        so the packed keys are handed over instead of re-sorted)."""
        from ..tensor import SparseTensor, Sites
        return SparseTensor.from_sites(self.feats, Sites(self.coords, self.spatial_shape, self.batch_size,
                                                         keys=self.keys))

    def devoxelize(self, voxel_feats: Tensor) -> Tensor:
        """Per-point features ``[N_points, C]`` gathered from ``voxel_feats [N_vox, C]`` (zeros for
        dropped points); differentiable with respect to ``voxel_feats``."""
        if voxel_feats.dim() != 2 or voxel_feats.size(0) != self.num_voxels:
            raise ValueError(f"Voxels.devoxelize: voxel_feats must be [N_vox, C] with N_vox = {self.num_voxels}, "
                             f"got {list(voxel_feats.shape)}")
        kept = (self.point_to_voxel >= 0).unsqueeze(1).to(voxel_feats.dtype)
        return voxel_feats[self.point_to_voxel.clamp(min=0)] * kept


def grid_geometry(voxel_size: Sequence[float], point_range: Sequence[float]):
    """Check a voxel grid and return ``(lo, size, grid)``: float32 ``[3]`` range minimum and voxel size
    and the int ``(X, Y, Z)`` extents, ``round((max - min) / size)`` in float32 as spconv's
    ``PointToVoxel``."""
    try:
        if isinstance(voxel_size, (str, bytes)) or isinstance(point_range, (str, bytes)):
            raise TypeError  # each character of "012345" would parse as a number
        vs = [float(v) for v in voxel_size]
        pr = [float(v) for v in point_range]
    except (TypeError, ValueError):
        raise TypeError(f"voxelize: voxel_size must be 3 numbers (dx, dy, dz) and point_range 6 numbers "
                        f"(x_min, y_min, z_min, x_max, y_max, z_max), got {voxel_size!r} and {point_range!r}") from None
    if len(vs) != 3 or any(not np.isfinite(v) or v <= 0 for v in vs):
        raise ValueError(f"voxelize: voxel_size must be 3 positive finite numbers (dx, dy, dz) in metres, "
                         f"got {voxel_size!r}")
    if len(pr) != 6 or not all(np.isfinite(pr)):
        raise ValueError(f"voxelize: point_range must be 6 finite numbers (x_min, y_min, z_min, x_max, y_max, "
                         f"z_max), got {point_range!r}")
    for a, axis in enumerate("xyz"):
        if pr[a + 3] <= pr[a]:
            raise ValueError(f"voxelize: point_range {point_range!r} is empty or inverted on {axis}: min {pr[a]} "
                             f">= max {pr[a + 3]}; give (x_min, y_min, z_min, x_max, y_max, z_max) with each "
                             f"min < max")
    lo = np.asarray(pr[:3], dtype=np.float32)
    size = np.asarray(vs, dtype=np.float32)
    grid = np.round((np.asarray(pr[3:], dtype=np.float32) - lo) / size).astype(np.int64)
    if (grid <= 0).any():
        raise ValueError(f"voxelize: voxel_size {voxel_size!r} is larger than point_range {point_range!r} on "
                         f"axis {'xyz'[int(np.argmin(grid))]}; the grid would have no cells")
    return lo, size, tuple(int(g) for g in grid)


def _as_points(points, name: str) -> Tensor:
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, Tensor):
        raise TypeError(f"voxelize: {name} must be a float tensor or ndarray [N, F], got {type(points).__name__}")
    if not points.dtype.is_floating_point:
        raise TypeError(f"voxelize: {name} must be floating point, got {points.dtype}")
    if points.dim() != 2 or points.size(1) < 3:
        raise ValueError(f"voxelize: {name} must have shape [N, F] with F >= 3 (x, y, z first), "
                         f"got {list(points.shape)}")
    return points


def _gather_scans(points, batch: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], int]:
    """(all points ``[N, F]``, batch index ``[N]`` or None for one scan, B)."""
    if isinstance(points, (list, tuple)):
        if batch is not None:
            raise ValueError("voxelize: give either a list of scans or one tensor with a batch vector, not both")
        if len(points) == 0:
            raise ValueError("voxelize: points is an empty list; give at least one scan [N, F]")
        scans = [_as_points(p, f"points[{i}]") for i, p in enumerate(points)]
        widths = [s.size(1) for s in scans]
        if len(set(widths)) > 1:
            raise ValueError(f"voxelize: all scans of a batch need the same number of features F, got widths "
                             f"{widths}; slice them to a common [N_i, F]")
        devices = {s.device for s in scans}
        if len(devices) > 1:
            raise ValueError(f"voxelize: the scans are on several devices {sorted(map(str, devices))}; move them "
                             f"to one")
        device = scans[0].device
        lengths = torch.tensor([s.size(0) for s in scans], device=device)
        batch_index = torch.repeat_interleave(torch.arange(len(scans), device=device), lengths)
        dtype = torch.promote_types(scans[0].dtype, scans[-1].dtype)
        return torch.cat([s.to(dtype) for s in scans]), batch_index, len(scans)
    pts = _as_points(points, "points")
    if batch is None:
        return pts, None, 1
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.numel() != pts.size(0) \
            or batch.dtype.is_floating_point or batch.dtype == torch.bool:
        got = f"{batch.dtype} {list(batch.shape)}" if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"voxelize: batch must be an integer tensor [N] = [{pts.size(0)}] with the scan index of "
                         f"every point, got {got}")
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError(f"voxelize: batch has negative scan index {int(batch.min())}; indices must be >= 0")
    return pts, batch.to(pts.device).long(), int(batch.max()) + 1 if batch.numel() else 1


def _cells(pts: Tensor, lo: np.ndarray, size: np.ndarray, grid: Tuple[int, int, int]):
    """Voxel cells of the points: per-axis float32 cells ``[N]`` (x, y, z), finite rows ``[N]`` (bool) and
    the rows ``[K]`` that are finite and inside the grid."""
    device = pts.device
    # float32 whatever the points' dtype: spconv's arithmetic, bit for bit. Axis by axis: contiguous
    # columns make the range test several times faster than on [N, 3] rows
    cells = [torch.sub(pts[:, a].float(), torch.tensor(lo[a], device=device))
             .div_(torch.tensor(size[a], device=device)).floor_() for a in range(3)]
    inside = (cells[0] >= 0) & (cells[0] < grid[0]) & (cells[1] >= 0) & (cells[1] < grid[1]) \
        & (cells[2] >= 0) & (cells[2] < grid[2])
    # a row sum is non-finite iff an entry is, unless finite entries overflow it: recheck those rows
    finite = torch.isfinite(pts.sum(dim=1))
    suspect = (~finite).nonzero().squeeze(1)
    if suspect.numel():
        finite[suspect] = torch.isfinite(pts[suspect]).all(dim=1)
    # NaN compares False, so non-finite points also fail `inside`; they are counted apart through `finite`
    return cells, finite, (inside & finite).nonzero().squeeze(1)


def _arrival_rank(voxel_batch: Tensor, first_rows: Tensor, num_points: int) -> Tensor:
    """Rank ``[V]`` of each voxel within its scan in the order its first point arrives (input row
    ``first_rows``): spconv numbers voxels that way and stops at ``max_voxels``."""
    by_arrival = torch.argsort(voxel_batch * num_points + first_rows)
    arrival_batch = voxel_batch[by_arrival]
    rank = torch.empty_like(by_arrival)
    rank[by_arrival] = torch.arange(len(by_arrival), device=by_arrival.device) \
        - torch.searchsorted(arrival_batch, arrival_batch)
    return rank


def voxelize(points: Union[PointsLike, Sequence[PointsLike]], voxel_size: Sequence[float],
             point_range: Sequence[float], reduce: str = "mean", max_voxels: Optional[int] = None,
             max_points_per_voxel: Optional[int] = None, batch: Optional[Tensor] = None) -> Voxels:
    """Group points into the voxels of a regular grid and reduce their features.

    The voxel of a point is ``floor((xyz - range_min) / voxel_size)`` computed in float32, exactly as
    spconv's ``PointToVoxel`` (a float64 floor puts points on voxel boundaries elsewhere: 41,264 instead
    of 41,281 voxels on KITTI frame 000000 at 0.05 x 0.05 x 0.1 m in ``[0, -40, -3, 70.4, 40, 1]``), and
    the grid has ``round((max - min) / voxel_size)`` cells per axis. Coordinates follow the detector
    convention ``(b, z, y, x)`` with ``spatial_shape = (Z, Y, X)``; voxels come sorted by that key.
    Features are reduced in the points' own dtype.

    Args:
        points: one scan ``[N, F]`` (x, y, z, then any features) as a tensor or ndarray, or a list of
            scans ``[N_i, F]`` (a batch of ``B = len(points)``).
        voxel_size: ``(dx, dy, dz)`` in metres, positive.
        point_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``, each min < max.
        reduce (str): ``"mean"``, ``"sum"``, ``"max"`` (per feature), ``"first"`` (the first point in
            input order) or ``"count"`` (default: ``"mean"``).
        max_voxels (int, optional): keep at most this many voxels per scan, those first reached in point
            order (as spconv's ``max_num_voxels``); None keeps all (default: None).
        max_points_per_voxel (int, optional): reduce over at most the first this many points of each
            voxel in input order (as spconv's ``max_num_points_per_voxel``); None uses all (default: None).
        batch (Tensor, optional): ``[N]`` integer scan index of every point when ``points`` is one
            tensor holding several scans; ``B = batch.max() + 1`` (default: None, one scan).

    Returns:
        Voxels: features, coordinates, point-to-voxel map and the counts of dropped points. NaN/inf
        points and out-of-range points are dropped and counted, not errors.

    Shapes:
        - points ``[N, F]`` (or ``B`` scans ``[N_i, F]``) -> feats ``[N_vox, F]``, coords
          ``[N_vox, 4]``, point_to_voxel ``[N]`` (``N = sum N_i``).

    Example:
        >>> import torch
        >>> pts = torch.tensor([[0.05, 0.05, 0.05, 1.0], [0.15, 0.05, 0.05, 3.0], [0.12, 0.02, 0.0, 5.0]])
        >>> v = voxelize(pts, (0.1, 0.1, 0.1), (0, 0, 0, 1, 1, 1))
        >>> v.coords.tolist(), v.feats[:, 3].tolist(), v.point_to_voxel.tolist()
        ([[0, 0, 0, 0], [0, 0, 0, 1]], [1.0, 4.0], [0, 1, 1])
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"voxelize: reduce must be one of {REDUCTIONS}, got {reduce!r}")
    for name, value in (("max_voxels", max_voxels), ("max_points_per_voxel", max_points_per_voxel)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"voxelize: {name} must be None or a positive int, got {value!r}")
    lo, size, (gx, gy, gz) = grid_geometry(voxel_size, point_range)
    pts, batch_index, batch_size = _gather_scans(points, batch)
    spatial_shape = (gz, gy, gx)
    radices = key_radices(spatial_shape, batch_size)   # checks the key space fits int64
    device, num = pts.device, pts.size(0)

    cells, finite, kept = _cells(pts, lo, size, (gx, gy, gz))
    # int32 keys sort more than twice as fast as int64 ones; most grids fit
    key_dtype = torch.int32 if radices[0] * gz * gy * gx < 2 ** 31 else torch.int64
    ix, iy, iz = (c.index_select(0, kept).to(key_dtype) for c in cells)
    keys = (iz * gy + iy) * gx + ix
    if batch_index is not None:
        keys += batch_index[kept].to(key_dtype) * (gz * gy * gx)

    # stable: inside a voxel the points keep their input order ("first", the caps, deterministic sums)
    sorted_keys, order = torch.sort(keys, stable=True)
    new_voxel = torch.ones_like(sorted_keys, dtype=torch.bool)
    new_voxel[1:] = sorted_keys[1:] != sorted_keys[:-1]
    voxel_of_sorted = torch.cumsum(new_voxel, 0) - 1
    starts = new_voxel.nonzero().squeeze(1)                    # first sorted point of each voxel
    counts = torch.diff(starts, append=starts.new_tensor([keys.numel()]))
    num_voxels = starts.numel()
    rows = kept[order]                                         # input row of each sorted point
    voxel_batch = batch_index[rows[starts]] if batch_index is not None else \
        torch.zeros(num_voxels, dtype=torch.long, device=device)
    first = order[starts]
    coords = torch.stack([voxel_batch, iz[first], iy[first], ix[first]], dim=1).to(torch.int32)
    unique_keys = sorted_keys[starts].long()

    keep_voxel = keep_point = None
    if max_voxels is not None:
        keep_voxel = _arrival_rank(voxel_batch, rows[starts], num) < max_voxels
    if max_points_per_voxel is not None:
        keep_point = torch.arange(rows.numel(), device=device) - starts[voxel_of_sorted] < max_points_per_voxel
        counts = counts.clamp(max=max_points_per_voxel)
    if keep_voxel is not None and not bool(keep_voxel.all()):
        in_kept_voxel = keep_voxel[voxel_of_sorted]
        keep_point = in_kept_voxel if keep_point is None else keep_point & in_kept_voxel
        voxel_of_sorted = torch.where(in_kept_voxel, (torch.cumsum(keep_voxel, 0) - 1)[voxel_of_sorted], -1)
        unique_keys, counts, coords = unique_keys[keep_voxel], counts[keep_voxel], coords[keep_voxel]
    # points over the per-voxel cap still lie in a kept voxel and map to it (as spconv's point ids);
    # points of dropped voxels map to -1
    point_to_voxel = torch.full((num,), -1, dtype=torch.long, device=device)
    point_to_voxel[rows] = voxel_of_sorted
    if keep_point is not None:
        rows = rows[keep_point]

    if reduce == "count":
        feats = counts.to(pts.dtype).unsqueeze(1)
    elif reduce == "first":
        feats = pts.index_select(0, rows[torch.cumsum(counts, 0) - counts])
    else:
        feats = torch.segment_reduce(pts.index_select(0, rows), reduce, lengths=counts, unsafe=True)

    num_finite = int(finite.sum())
    return Voxels(feats=feats, coords=coords, spatial_shape=spatial_shape, batch_size=batch_size,
                  point_to_voxel=point_to_voxel, num_points=counts, keys=unique_keys,
                  dropped_nonfinite=num - num_finite, dropped_out_of_range=num_finite - kept.numel(),
                  dropped_over_capacity=kept.numel() - rows.numel())
