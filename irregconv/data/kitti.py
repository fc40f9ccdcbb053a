"""KITTI object labels and calibration: camera-frame ``label_2`` boxes -> LiDAR-frame boxes."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np


def read_kitti_calib(path) -> Dict[str, np.ndarray]:
    """``calib/<id>.txt`` -> matrices ``P0..P3`` (3x4), ``R0_rect`` (3x3), ``Tr_velo_to_cam`` (3x4), ..."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_kitti_calib: no such file: {path}")
    calib = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, values = line.split(":", 1)
        try:
            numbers = np.array([float(v) for v in values.split()])
        except ValueError:
            raise ValueError(f"read_kitti_calib: {path} line {key.strip()!r} has non-numeric values; "
                             f"is it a KITTI object calib file?") from None
        if numbers.size not in (9, 12):
            raise ValueError(f"read_kitti_calib: {path} line {key.strip()!r} has {numbers.size} numbers; KITTI "
                             f"calib matrices have 9 (3x3) or 12 (3x4)")
        calib[key.strip()] = numbers.reshape(3, 3) if numbers.size == 9 else numbers.reshape(3, 4)
    for key in ("R0_rect", "Tr_velo_to_cam"):
        if key not in calib:
            raise ValueError(f"read_kitti_calib: {path} has no {key}; is it a KITTI object calib file?")
    return calib


def read_kitti_labels(path, calib: Union[Dict[str, np.ndarray], str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """``label_2/<id>.txt`` -> LiDAR boxes ``[M, 7]`` (x, y, z centre, l, w, h, yaw) and class names ``[M]``.

    ``DontCare`` entries are skipped. Camera boxes (bottom centre, h, w, l, rotation_y) are moved to the
    LiDAR frame with the inverse of ``R0_rect @ Tr_velo_to_cam``; ``yaw = -rotation_y - pi / 2`` (as
    OpenPCDet's ``boxes3d_kitti_camera_to_lidar``).

    Args:
        path: the label file.
        calib: the frame's calibration, as read by :func:`read_kitti_calib` or the path of its file.
    """
    if not isinstance(calib, dict):
        calib = read_kitti_calib(calib)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_kitti_labels: no such file: {path}")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r[0] != "DontCare"]
    if any(len(r) < 15 for r in rows):
        raise ValueError(f"read_kitti_labels: {path} has a line with fewer than 15 fields; not a KITTI label_2 file")
    names = np.array([r[0] for r in rows])
    try:
        values = np.array([[float(v) for v in r[8:15]] for r in rows]).reshape(-1, 7)
    except ValueError as exc:
        raise ValueError(f"read_kitti_labels: {path} has a non-numeric box field ({exc}); not a KITTI label_2 "
                         f"file") from None
    h, w, l = values[:, 0], values[:, 1], values[:, 2]
    bottom_rect = values[:, 3:6]
    rect = np.eye(4)
    rect[:3, :3] = calib["R0_rect"]
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :4] = calib["Tr_velo_to_cam"]
    cam_to_velo = np.linalg.inv(rect @ velo_to_cam)
    bottom = (cam_to_velo @ np.concatenate([bottom_rect, np.ones((len(rows), 1))], axis=1).T).T[:, :3]
    centre = bottom + np.stack([np.zeros_like(h), np.zeros_like(h), h / 2], axis=1)
    boxes = np.concatenate([centre, np.stack([l, w, h, -values[:, 6] - np.pi / 2], axis=1)], axis=1)
    return boxes.astype(np.float32), names
