"""``irregconv detect --scan PATH [--checkpoint CKPT] [--out PNG]``: run a trained detector on a scan and draw it.

Reads KITTI ``.bin``, nuScenes ``.pcd.bin``, ``.pcd`` / ``.ply`` and ``.npy`` / ``.npz``
(:func:`irregconv.data.read_points`) and writes a bird's-eye-view PNG of the detector's range with the
points and the detections. With KITTI labels next to the scan (``<stem>_label_2.txt`` and
``<stem>_calib.txt`` beside it, or KITTI's layout ``../label_2/<stem>.txt`` and ``../calib/<stem>.txt``) the
labelled boxes of the detector's classes are drawn too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..models.detector import NMS_KINDS

DEFAULT_CHECKPOINT = Path("outputs/demo/detector.pt")


def find_kitti_labels(scan: Path) -> Optional[Tuple[Path, Path]]:
    """The ``(label_2, calib)`` files of ``scan``, if both exist."""
    stem = scan.name.split(".")[0]
    candidates = [(scan.with_name(f"{stem}_label_2.txt"), scan.with_name(f"{stem}_calib.txt")),
                  (scan.parent.parent / "label_2" / f"{stem}.txt", scan.parent.parent / "calib" / f"{stem}.txt")]
    return next(((label, calib) for label, calib in candidates if label.is_file() and calib.is_file()), None)


def to_detector_frame(points: np.ndarray, scan: Path, num_features: int) -> np.ndarray:
    """Points ``[N, >= 3]`` as the detector was trained on them: ``[N, num_features]`` in the KITTI LiDAR
    frame (x forward, y left), intensity in ``[0, 1]`` in column 3.

    nuScenes sweeps (``.pcd.bin``) have x right and y forward and intensity in ``[0, 255]``: they are turned by
    -90 degrees about z and their intensity is divided by 255. ``.pcd`` / ``.ply`` files carry colours, not
    intensity, after x, y, z: their intensity is set to 0, as it is for any file with too few columns.
    """
    name = scan.name.lower()
    xyz = points[:, :3].copy()
    extra = points[:, 3:num_features].copy()
    if name.endswith(".pcd.bin"):
        xyz[:, 0], xyz[:, 1] = points[:, 1], -points[:, 0]
        extra[:, :1] = extra[:, :1] / 255.0
    elif name.endswith((".pcd", ".ply")):
        extra[:] = 0.0
    missing = num_features - 3 - extra.shape[1]
    return np.concatenate([xyz, extra, np.zeros((len(points), missing), np.float32)], axis=1).astype(np.float32)


def view_range(point_range, boxes: Optional[np.ndarray], margin: float = 3.0):
    """The detector's ``point_range``, grown in x and y to show every box (centre +- ``margin`` metres)."""
    lo, hi = list(point_range[:3]), list(point_range[3:])
    if boxes is not None and len(boxes):
        lo[:2] = np.minimum(lo[:2], boxes[:, :2].min(axis=0) - margin).tolist()
        hi[:2] = np.maximum(hi[:2], boxes[:, :2].max(axis=0) + margin).tolist()
    return (*lo, *hi)


def run(args: argparse.Namespace) -> int:
    from ..data import read_kitti_calib, read_kitti_labels, read_points
    from ..viz import plot_bev
    from .detector_training import load_checkpoint, predict

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise SystemExit(f"irregconv detect: no checkpoint at {checkpoint}; run `irregconv demo` first (it writes "
                         f"{DEFAULT_CHECKPOINT}) or pass --checkpoint PATH")
    scan = Path(args.scan)
    try:  # a missing, truncated or corrupt file is the user's to fix: one line, no traceback
        model = load_checkpoint(checkpoint, device=args.device)
        raw = read_points(scan)
    except (OSError, ValueError) as err:
        raise SystemExit(f"irregconv detect: {err}") from err
    config = model.config
    points = to_detector_frame(raw, scan, config.num_point_features)
    found = predict(model, [points], score_threshold=args.score_threshold, nms=args.nms)[0]
    gt, labels = None, find_kitti_labels(scan)
    if labels is not None:
        try:
            gt_boxes, names = read_kitti_labels(labels[0], read_kitti_calib(labels[1]))
        except (OSError, ValueError) as err:
            raise SystemExit(f"irregconv detect: {err}") from err
        gt = gt_boxes[np.isin(names, config.class_names)]
    out = Path(args.out) if args.out else Path("outputs") / f"detect_{scan.name.split('.')[0]}.png"
    classes = "/".join(config.class_names)
    name = scan.name if len(scan.name) <= 40 else scan.name[:18] + "..." + scan.name[-19:]
    plot_bev(out, points, gt, found.boxes, found.scores, point_range=view_range(config.point_range, gt),
             title=f"{name}: {len(found.boxes)} detections in x [{config.point_range[0]:g}, "
                   f"{config.point_range[3]:g}] y [{config.point_range[1]:g}, {config.point_range[4]:g}] m"
                   + (f", {len(gt)} labelled (green)" if gt is not None else ""))
    print(f"{scan}: {len(points)} points, {len(found.boxes)} detections (score >= {args.score_threshold}, "
          f"{args.nms} NMS) in x [{config.point_range[0]:g}, {config.point_range[3]:g}] "
          f"y [{config.point_range[1]:g}, {config.point_range[4]:g}] m"
          + (f"; {len(gt)} labelled {classes} boxes drawn from {labels[0].name}" if gt is not None else ""))
    for box, score, label in zip(found.boxes, found.scores, found.labels):
        print(f"  {config.class_names[label]} {score:.2f}  x {box[0]:6.2f}  y {box[1]:6.2f}  z {box[2]:5.2f}  "
              f"l {box[3]:.2f}  w {box[4]:.2f}  h {box[5]:.2f}  yaw {box[6]:5.2f}")
    print(f"picture: {out}")
    return 0


def add_parser(subparsers) -> None:
    summary = "run a trained detector on a scan and write a bird's-eye-view picture"
    parser = subparsers.add_parser("detect", help=summary, description=summary[0].upper() + summary[1:] + ".")
    parser.add_argument("--scan", required=True, help="point file: .bin (KITTI), .pcd.bin (nuScenes), .pcd, .ply, "
                                                      ".npy, .npz")
    parser.add_argument("--checkpoint", default=None, help=f"detector checkpoint (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--out", default=None, help="PNG to write (default: outputs/detect_<scan>.png)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="minimum score (default: 0.3)")
    parser.add_argument("--nms", choices=NMS_KINDS, default="maxpool", help="peak suppression (default: maxpool)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(run=run)
