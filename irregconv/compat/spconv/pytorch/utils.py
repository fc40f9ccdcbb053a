"""``spconv.pytorch.utils``: :class:`PointToVoxel`, spconv's voxel generator for torch tensors, and
:func:`gather_features_by_pc_voxel_id`, which takes per-voxel results back to the points.

:func:`assign_points_to_voxels` is the algorithm of spconv's point-to-voxel kernels, vectorised in torch: a
point's cell on axis ``j`` is ``floor((p - range_min) / voxel_size)`` in the points' precision with float32
constants (float32 points: float32 arithmetic, bit for bit as spconv's), voxels are numbered in the order
their first point arrives, points fill a voxel's slots in input order, and the caps ``max_num_voxels`` and
``max_num_points_per_voxel`` drop what spconv drops. :class:`~irregconv.compat.spconv.utils.Point2VoxelCPU3d`
(``spconv.utils``) is built on it too.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["PointToVoxel", "VoxelGrid", "assign_points_to_voxels", "gather_features_by_pc_voxel_id", "generate_voxels"]


@dataclass(frozen=True)
class VoxelGrid:
    """A voxel generator's grid, in spconv's internal axis order (reversed: ``z, y, x`` for 3-d), with spconv's
    float32 values.

    Attributes:
        vsize (tuple of float): ``D`` voxel sizes (float32 values).
        coors_range (tuple of float): ``2D`` values, the minima then the maxima (float32 values).
        grid_size (tuple of int): ``D`` cells per axis, ``round((max - min) / vsize)`` in float32, halves away
            from zero (C++ ``std::round``).
        grid_stride (tuple of int): row-major strides of ``grid_size``.
    """
    vsize: Tuple[float, ...]
    coors_range: Tuple[float, ...]
    grid_size: Tuple[int, ...]
    grid_stride: Tuple[int, ...]

    @classmethod
    def from_xyz(cls, vsize_xyz: Sequence[float], coors_range_xyz: Sequence[float], owner: str) -> "VoxelGrid":
        """The grid of voxel sizes ``(x, y, ...)`` and a range ``(x_min, y_min, ..., x_max, y_max, ...)``."""
        try:
            if isinstance(vsize_xyz, (str, bytes)) or isinstance(coors_range_xyz, (str, bytes)):
                raise TypeError
            sizes = [float(v) for v in vsize_xyz]
            bounds = [float(v) for v in coors_range_xyz]
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: vsize_xyz must be a sequence of D numbers and coors_range_xyz one of 2D numbers, "
                            f"got {vsize_xyz!r} and {coors_range_xyz!r}") from None
        ndim = len(sizes)
        if not 1 <= ndim <= 4 or any(not math.isfinite(v) or v <= 0 for v in sizes):
            raise ValueError(f"{owner}: vsize_xyz must be 1 to 4 positive finite voxel sizes, got {vsize_xyz!r}")
        if len(bounds) != 2 * ndim or not all(math.isfinite(v) for v in bounds):
            raise ValueError(f"{owner}: coors_range_xyz must be {2 * ndim} finite numbers (the {ndim} minima, then "
                             f"the {ndim} maxima), got {coors_range_xyz!r}")
        vsize = np.asarray(sizes[::-1], dtype=np.float32)
        lo = np.asarray(bounds[:ndim][::-1], dtype=np.float32)
        hi = np.asarray(bounds[ndim:][::-1], dtype=np.float32)
        cells = (hi - lo) / vsize                                  # float32, as spconv
        grid = [int(math.floor(float(c) + 0.5)) for c in cells]     # std::round for the positive extents
        if any(g <= 0 for g in grid):
            axis = "xyzw"[ndim - 1 - int(np.argmin(grid))]
            raise ValueError(f"{owner}: coors_range_xyz {coors_range_xyz!r} with vsize_xyz {vsize_xyz!r} has no cells "
                             f"on axis {axis}; each maximum must exceed its minimum by at least half a voxel")
        stride = [math.prod(grid[axis + 1:]) for axis in range(ndim)]
        return cls(tuple(float(v) for v in vsize), tuple(float(v) for v in np.concatenate([lo, hi])), tuple(grid),
                   tuple(stride))

    @property
    def ndim(self) -> int:
        return len(self.vsize)


def positive_int(value, name: str, owner: str, minimum: int = 1) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return number


def voxel_buffers(grid: VoxelGrid, num_point_features: int, max_num_voxels: int, max_num_points_per_voxel: int,
                  device: torch.device, owner: str) -> Tuple[Tensor, Tensor, Tensor]:
    """A voxel generator's buffers, its arguments checked: voxels ``[max_num_voxels, max_num_points_per_voxel,
    F]`` float32, indices ``[max_num_voxels, D]`` int32 and num_per_voxel ``[max_num_voxels]`` int32, zeros."""
    num_point_features = positive_int(num_point_features, "num_point_features", owner, minimum=grid.ndim)
    max_num_voxels = positive_int(max_num_voxels, "max_num_voxels", owner)
    max_num_points_per_voxel = positive_int(max_num_points_per_voxel, "max_num_points_per_voxel", owner)
    return (torch.zeros(max_num_voxels, max_num_points_per_voxel, num_point_features, dtype=torch.float32,
                        device=device),
            torch.zeros(max_num_voxels, grid.ndim, dtype=torch.int32, device=device),
            torch.zeros(max_num_voxels, dtype=torch.int32, device=device))


def as_points(points, num_point_features: int, owner: str) -> Tensor:
    """``points`` (a torch tensor, a numpy array or anything with ``.numpy()``, such as a cumm tensorview) as
    a float32 or float64 tensor ``[N, num_point_features]``, checked."""
    if not isinstance(points, (Tensor, np.ndarray)) and callable(getattr(points, "numpy", None)):
        points = points.numpy()
    if isinstance(points, np.ndarray):
        if points.dtype not in (np.float32, np.float64):
            raise TypeError(f"{owner}: points must be float32 or float64, got {points.dtype}")
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, Tensor):
        raise TypeError(f"{owner}: points must be a torch tensor, a numpy array or a tensorview [N, "
                        f"{num_point_features}], got {type(points).__name__}")
    if points.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{owner}: points must be float32 or float64, got {points.dtype}")
    if points.dim() != 2 or points.size(1) != num_point_features:
        raise ValueError(f"{owner}: points must have shape [N, {num_point_features}] (num_point_features="
                         f"{num_point_features}, x, y, z first), got {list(points.shape)}")
    return points


def assign_points_to_voxels(points: Tensor, grid: VoxelGrid, max_num_voxels: int, max_num_points_per_voxel: int):
    """spconv's assignment of points to voxels.

    Args:
        points (Tensor): ``[N, F]`` float32 or float64, coordinates in columns ``0 .. D-1`` (x first).
        grid (VoxelGrid): the voxel grid.
        max_num_voxels (int): voxels beyond this many (in order of their first point) are dropped.
        max_num_points_per_voxel (int): points of a voxel beyond this many (in input order) are dropped.

    Returns:
        ``(voxel_id, slot, coords, counts)``: ``voxel_id [N]`` int64, the voxel of every point (-1 outside the
        range, for NaN or inf coordinates, and in dropped voxels; a point over the per-voxel cap keeps its
        voxel, as spconv's point ids); ``slot [N]`` int64, its place in the voxel (>= the cap when dropped);
        ``coords [V, D]`` int32 cells in spconv's reversed axis order; ``counts [V]`` int32 points kept.
    """
    device, num, ndim = points.device, points.size(0), grid.ndim
    valid = torch.ones(num, dtype=torch.bool, device=device)
    cells = []
    for axis in range(ndim):  # axis 0 is the last coordinate column (z of x, y, z)
        low = torch.tensor(grid.coors_range[axis], dtype=torch.float32).to(device, points.dtype)
        size = torch.tensor(grid.vsize[axis], dtype=torch.float32).to(device, points.dtype)
        cell = torch.floor((points[:, ndim - 1 - axis] - low) / size)
        valid &= (cell >= 0) & (cell < grid.grid_size[axis])  # NaN compares False
        cells.append(cell)
    rows = valid.nonzero().squeeze(1)
    cells = torch.stack([c[rows] for c in cells], dim=1).long()
    keys = (cells * torch.tensor(grid.grid_stride, device=device)).sum(dim=1)
    sorted_keys, order = torch.sort(keys, stable=True)            # points of a voxel together, in input order
    starts_mask = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts_mask[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group = torch.cumsum(starts_mask, 0) - 1
    starts = starts_mask.nonzero().squeeze(1)
    first_row = order[starts]                                    # each voxel's first point (index into rows)
    arrival = torch.empty_like(first_row)
    arrival[torch.argsort(first_row)] = torch.arange(first_row.numel(), device=device)
    slot_sorted = torch.arange(order.numel(), device=device) - starts[group]
    kept_voxel = arrival < max_num_voxels
    voxel_id = torch.full((num,), -1, dtype=torch.long, device=device)
    slot = torch.full((num,), -1, dtype=torch.long, device=device)
    point_rows = rows[order]
    voxel_id[point_rows] = torch.where(kept_voxel[group], arrival[group], torch.full_like(group, -1))
    slot[point_rows] = slot_sorted
    num_kept = int(kept_voxel.sum())
    by_arrival = torch.argsort(arrival)[:num_kept]
    coords = cells[first_row[by_arrival]].to(torch.int32)
    sizes = torch.diff(starts, append=starts.new_tensor([order.numel()]))
    counts = sizes[by_arrival].clamp(max=max_num_points_per_voxel).to(torch.int32)
    return voxel_id, slot, coords, counts


def fill_voxels(points: Tensor, voxel_id: Tensor, slot: Tensor, counts: Tensor, voxels: Tensor,
                empty_mean: bool) -> None:
    """Write every kept point into ``voxels [V_max, P, F]`` at (its voxel, its slot), cast to the buffer's dtype;
    with ``empty_mean`` the empty slots of a voxel get the mean of its points.

    spconv's ``empty_mean`` carries each voxel's mean into the next voxel's sum (its accumulator is not reset);
    here every voxel gets its own mean.
    """
    kept = (voxel_id >= 0) & (slot < voxels.size(1))
    voxels[voxel_id[kept], slot[kept]] = points[kept].to(voxels.dtype)
    if empty_mean and counts.numel():
        filled = voxels[:counts.numel()]
        mean = filled.sum(dim=1) / counts.unsqueeze(1).to(voxels.dtype)
        empty = torch.arange(voxels.size(1), device=voxels.device).unsqueeze(0) >= counts.unsqueeze(1)
        filled[empty] = mean.unsqueeze(1).expand_as(filled)[empty]


class PointToVoxel:
    """spconv's torch voxel generator: points ``[N, F]`` -> at most ``max_num_voxels`` voxels of at most
    ``max_num_points_per_voxel`` points each, their cells and point counts.

    Args:
        vsize_xyz (sequence of float): ``D`` voxel sizes, x first (``D`` in 1..4).
        coors_range_xyz (sequence of float): the ``D`` minima then the ``D`` maxima of the range, x first.
        num_point_features (int): ``F``, the width of a point (coordinates first), ``>= D``.
        max_num_voxels (int): voxels kept, the first reached in point order.
        max_num_points_per_voxel (int): points kept per voxel, the first in input order.
        device (torch.device): where the buffers and the points live (default: CPU).

    Attributes:
        voxels ``[max_num_voxels, max_num_points_per_voxel, F]`` float32, indices ``[max_num_voxels, D]`` int32,
        num_per_voxel ``[max_num_voxels]`` int32: the buffers the last call wrote (its results are clones).
        vsize, coors_range, grid_size, grid_stride: the grid in spconv's reversed axis order. spconv's dense
        ``hashdata`` grid (one int32 per cell) is not allocated.

    Shapes:
        - pc ``[N, F]`` -> voxels ``[V, P, F]``, indices ``[V, D]`` (reversed axes: ``z, y, x``),
          num_per_voxel ``[V]``, pc_voxel_id ``[N]`` (-1 for dropped points).
    """

    def __init__(self, vsize_xyz: List[float], coors_range_xyz: List[float], num_point_features: int,
                 max_num_voxels: int, max_num_points_per_voxel: int, device: torch.device = torch.device("cpu:0")):
        owner = type(self).__name__
        grid = VoxelGrid.from_xyz(vsize_xyz, coors_range_xyz, owner)
        self.grid, self.ndim, self.device = grid, grid.ndim, torch.device(device)
        self.num_point_features, self.max_num_voxels = num_point_features, max_num_voxels
        self.max_num_points_per_voxel = max_num_points_per_voxel
        self.vsize, self.coors_range = list(grid.vsize), list(grid.coors_range)
        self.grid_size, self.grid_stride = list(grid.grid_size), list(grid.grid_stride)
        self.voxels, self.indices, self.num_per_voxel = voxel_buffers(
            grid, num_point_features, max_num_voxels, max_num_points_per_voxel, self.device, owner)

    def __call__(self, pc: Tensor, clear_voxels: bool = True, empty_mean: bool = False):
        """``(voxels, indices, num_per_voxel)`` of ``pc [N, F]`` (see :meth:`generate_voxel_with_id`)."""
        return self.generate_voxel_with_id(pc, clear_voxels, empty_mean)[:3]

    def generate_voxel_with_id(self, pc: Tensor, clear_voxels: bool = True, empty_mean: bool = False):
        """``(voxels [V, P, F], indices [V, D], num_per_voxel [V], pc_voxel_id [N])`` of ``pc [N, F]``.

        Args:
            pc (Tensor): ``[N, F]`` float32 or float64 points on this generator's device type.
            clear_voxels (bool): zero the voxel buffer first; with False, slots not written by this call keep
                what an earlier call left there, as in spconv (default: True).
            empty_mean (bool): fill a voxel's empty slots with the mean of its points (default: False).
        """
        owner = f"{type(self).__name__}.generate_voxel_with_id"
        points = as_points(pc, self.num_point_features, owner)
        if points.device.type != self.device.type:
            raise ValueError(f"{owner}: pc is on {points.device} but this generator was built for {self.device}; "
                             f"move the points or build the generator with device={points.device}")
        return generate_voxels(points.to(self.device), self.grid, self.voxels, self.indices, self.num_per_voxel,
                               clear_voxels, empty_mean)


def generate_voxels(points: Tensor, grid: VoxelGrid, voxels: Tensor, indices: Tensor, num_per_voxel: Tensor,
                    clear_voxels: bool, empty_mean: bool):
    """Fill the buffers ``voxels``, ``indices``, ``num_per_voxel`` from ``points`` as spconv's generators do;
    returns clones of their first ``V`` rows and the per-point voxel ids ``[N]`` int64."""
    with torch.no_grad():
        voxel_id, slot, coords, counts = assign_points_to_voxels(points, grid, voxels.size(0), voxels.size(1))
        if clear_voxels:
            voxels.zero_()
        num_per_voxel.zero_()
        count = coords.size(0)
        indices[:count] = coords
        num_per_voxel[:count] = counts
        fill_voxels(points, voxel_id, slot, counts, voxels, empty_mean)
        return voxels[:count].clone(), indices[:count].clone(), num_per_voxel[:count].clone(), voxel_id


def gather_features_by_pc_voxel_id(seg_res_features: Tensor, pc_voxel_id: Tensor,
                                   invalid_value: Union[int, float] = 0) -> Tensor:
    """Per-point rows from per-voxel rows: ``seg_res_features[pc_voxel_id]``, with ``invalid_value`` for points
    whose id is -1 (dropped by the voxel generator). Differentiable with respect to ``seg_res_features``.

    Shapes:
        - seg_res_features ``[V, *]``, pc_voxel_id ``[N]`` -> ``[N, *]``.
    """
    owner = "gather_features_by_pc_voxel_id"
    if not isinstance(seg_res_features, Tensor) or seg_res_features.dim() < 1:
        raise TypeError(f"{owner}: seg_res_features must be a tensor [V, ...] of per-voxel results, got "
                        f"{type(seg_res_features).__name__ if not isinstance(seg_res_features, Tensor) else '0-d'}")
    if not isinstance(pc_voxel_id, Tensor) or pc_voxel_id.dim() != 1 or pc_voxel_id.dtype.is_floating_point \
            or pc_voxel_id.dtype == torch.bool:
        got = f"{pc_voxel_id.dtype} {list(pc_voxel_id.shape)}" if isinstance(pc_voxel_id, Tensor) \
            else type(pc_voxel_id).__name__
        raise TypeError(f"{owner}: pc_voxel_id must be an integer tensor [N] of voxel rows (-1 for none), got {got}")
    ids = pc_voxel_id.to(seg_res_features.device).long()
    if ids.numel() and (int(ids.min()) < -1 or int(ids.max()) >= seg_res_features.size(0)):
        raise ValueError(f"{owner}: pc_voxel_id holds {int(ids.min())}..{int(ids.max())}, but the ids must be -1 or "
                         f"rows of seg_res_features (0..{seg_res_features.size(0) - 1})")
    valid = ids >= 0
    gathered = seg_res_features[ids.clamp(min=0)]
    fill = torch.full_like(gathered, invalid_value)
    return torch.where(valid.reshape(-1, *([1] * (gathered.dim() - 1))), gathered, fill)
