"""Point-cloud readers: KITTI velodyne ``.bin``, nuScenes ``.pcd.bin``, ``.pcd`` / ``.ply`` (open3d), ``.npy`` / ``.npz``."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

#: float32 values per point of the raw binary formats
RECORD_WIDTH = {".pcd.bin": 5, ".bin": 4}
SUPPORTED = (".bin (KITTI: x, y, z, intensity)", ".pcd.bin (nuScenes: x, y, z, intensity, ring)",
             ".pcd / .ply (via open3d)", ".npy / .npz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".pcd.bin" if name.endswith(".pcd.bin") else path.suffix.lower()


def read_points(path: Union[str, Path]) -> np.ndarray:
    """Read a point cloud as ``float32 [N, F]`` (x, y, z first).

    * ``.bin``: KITTI velodyne, ``F = 4`` (x, y, z, intensity);
    * ``.pcd.bin``: nuScenes LIDAR_TOP sweep, ``F = 5`` (x, y, z, intensity, ring);
    * ``.pcd`` / ``.ply``: through open3d, ``F = 3``, or 6 with colours (r, g, b in [0, 1]); non-finite
      points of organised clouds are kept (voxelize drops and counts them);
    * ``.npy``: a ``[N, F]`` array; ``.npz``: the array named ``points``, or the only array.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, a byte count that is not a whole number of records, a file
            open3d cannot parse, or an array that is not ``[N, F >= 3]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_points: no such file: {path}")
    suffix = _suffix(path)
    if suffix in RECORD_WIDTH:
        width = RECORD_WIDTH[suffix]
        size = path.stat().st_size
        if size % (4 * width):
            raise ValueError(f"read_points: {path} has {size} bytes, not a multiple of {4 * width} "
                             f"({width} float32 per point for {suffix}); the file is truncated or not a "
                             f"{suffix} scan")
        return np.fromfile(path, dtype=np.float32).reshape(-1, width)
    if suffix in (".pcd", ".ply"):
        return _read_open3d(path)
    if suffix in (".npy", ".npz"):
        return _read_numpy(path)
    raise ValueError(f"read_points: unknown point file type {path.suffix!r} for {path}; supported: "
                     + ", ".join(SUPPORTED))


def _read_open3d(path: Path) -> np.ndarray:
    try:
        import open3d
    except ImportError as exc:
        raise ImportError(f"read_points: reading {path.suffix} files needs open3d "
                          f"(pip install 'irregconv[open3d]'): {exc}") from exc
    cloud = open3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    xyz = np.asarray(cloud.points, dtype=np.float32)
    if xyz.shape[0] == 0 and path.stat().st_size > 0:
        raise ValueError(f"read_points: open3d read no points from {path} ({path.stat().st_size} bytes); "
                         f"the file is corrupt, truncated or not a valid {path.suffix} file")
    if cloud.has_colors():
        return np.concatenate([xyz, np.asarray(cloud.colors, dtype=np.float32)], axis=1)
    return xyz


def _read_numpy(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"read_points: {path} is not a readable numpy file: {exc}") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = loaded.files
        if "points" in names:
            array = loaded["points"]
        elif len(names) == 1:
            array = loaded[names[0]]
        else:
            raise ValueError(f"read_points: {path} holds arrays {names}; name the point array 'points'")
    else:
        array = loaded
    if array.ndim != 2 or array.shape[1] < 3:
        raise ValueError(f"read_points: {path} holds an array of shape {array.shape}; expected [N, F] with "
                         f"F >= 3 (x, y, z first)")
    return np.ascontiguousarray(array, dtype=np.float32)
