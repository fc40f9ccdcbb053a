"""``spconv.utils``: the CPU voxel generators ``Point2VoxelCPU{1,2,3,4}d`` (OpenPCDet's data processor builds
``Point2VoxelCPU3d`` and calls ``point_to_voxel(cumm.tensorview.from_numpy(points))``).

They give spconv's voxels, cells and point counts (the algorithm of
:func:`irregconv.compat.spconv.pytorch.utils.assign_points_to_voxels`) for points given as a numpy array, a
torch tensor or a cumm tensorview (anything with ``.numpy()``; cumm is not needed), and return torch tensors,
which have ``.numpy()`` as tensorview's results do.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from ..pytorch.utils import VoxelGrid, as_points, generate_voxels, voxel_buffers

__all__ = ["Point2VoxelCPU1d", "Point2VoxelCPU2d", "Point2VoxelCPU3d", "Point2VoxelCPU4d"]


class Point2VoxelCPU:
    """spconv's CPU voxel generator for ``D = ndim`` coordinates (subclasses fix ``ndim``).

    Args:
        vsize_xyz (sequence of float): ``D`` voxel sizes, x first.
        coors_range_xyz (sequence of float): the ``D`` minima then the ``D`` maxima, x first.
        num_point_features (int): ``F``, the width of a point, ``>= D``.
        max_num_voxels (int): voxels kept, the first reached in point order.
        max_num_points_per_voxel (int): points kept per voxel, the first in input order.

    Attributes:
        voxels ``[max_num_voxels, max_num_points_per_voxel, F]`` float32, indices ``[max_num_voxels, D]`` int32,
        num_per_voxel ``[max_num_voxels]`` int32: the buffers the last call wrote (results are clones, so a
        later call does not change them). ``grid_size``: cells per axis, reversed (``z, y, x``). spconv's dense
        ``densehashdata`` grid (one int32 per cell, 360 MB for a KITTI grid) is not allocated.

    Shapes:
        - points ``[N, F]`` -> voxels ``[V, P, F]`` float32, coordinates ``[V, D]`` int32 (``z, y, x``), num_points
          ``[V]`` int32.
    """
    ndim = 0

    def __init__(self, vsize_xyz: List[float], coors_range_xyz: List[float], num_point_features: int,
                 max_num_voxels: int, max_num_points_per_voxel: int):
        owner = type(self).__name__
        grid = VoxelGrid.from_xyz(vsize_xyz, coors_range_xyz, owner)
        if grid.ndim != self.ndim:
            raise ValueError(f"{owner}: vsize_xyz must have {self.ndim} entries and coors_range_xyz {2 * self.ndim}, "
                             f"got {vsize_xyz!r} and {coors_range_xyz!r}; use Point2VoxelCPU{grid.ndim}d")
        self.grid = grid
        self.voxels, self.indices, self.num_per_voxel = voxel_buffers(
            grid, num_point_features, max_num_voxels, max_num_points_per_voxel, torch.device("cpu"), owner)

    @property
    def grid_size(self) -> List[int]:
        return list(self.grid.grid_size)

    @classmethod
    def calc_meta_data(cls, vsize_xyz: List[float], coors_range_xyz: List[float]):
        """``(vsize, grid_size, grid_stride, coors_range)`` in spconv's reversed axis order, as spconv's."""
        grid = VoxelGrid.from_xyz(vsize_xyz, coors_range_xyz, f"{cls.__name__}.calc_meta_data")
        return list(grid.vsize), list(grid.grid_size), list(grid.grid_stride), list(grid.coors_range)

    def _generate(self, points, clear_voxels: bool, empty_mean: bool, method: str) -> Tuple[Tensor, Tensor, Tensor]:
        owner = f"{type(self).__name__}.{method}"
        points = as_points(points, self.voxels.size(2), owner)
        if points.device.type != "cpu":
            raise ValueError(f"{owner}: points are on {points.device}; this is a CPU generator (use "
                             f"spconv.pytorch.utils.PointToVoxel(device=...) for other devices)")
        return generate_voxels(points, self.grid, self.voxels, self.indices, self.num_per_voxel, clear_voxels,
                               empty_mean)[:3]

    def point_to_voxel(self, points, clear_voxels: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """``(voxels, coordinates, num_points)`` of ``points [N, F]``: spconv's, bit for bit.

        ``clear_voxels=False`` leaves slots not written by this call as an earlier call left them (as spconv)."""
        return self._generate(points, clear_voxels, False, "point_to_voxel")

    def point_to_voxel_empty_mean(self, points, clear_voxels: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """As :meth:`point_to_voxel`, with the empty slots of each voxel holding the mean of its points (each
        voxel its own mean; spconv's carries every mean into the next voxel's sum)."""
        return self._generate(points, clear_voxels, True, "point_to_voxel_empty_mean")


class Point2VoxelCPU1d(Point2VoxelCPU):
    ndim = 1


class Point2VoxelCPU2d(Point2VoxelCPU):
    ndim = 2


class Point2VoxelCPU3d(Point2VoxelCPU):
    ndim = 3


class Point2VoxelCPU4d(Point2VoxelCPU):
    ndim = 4
