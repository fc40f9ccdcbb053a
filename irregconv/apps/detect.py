"""``irregconv detect --scan PATH``: run a trained detector on a real scan and draw a BEV picture.

Reads KITTI ``.bin``, nuScenes ``.pcd.bin``, ``.pcd`` / ``.ply`` and ``.npy`` / ``.npz``. With KITTI labels
next to the scan (``<stem>_label_2.txt`` + ``<stem>_calib.txt``, or KITTI's ``../label_2/<id>.txt`` +
``../calib/<id>.txt``) the ground-truth boxes are drawn too.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

DEFAULT_CHECKPOINT = Path("outputs/demo/detector.pt")


def find_kitti_labels(scan: Path) -> Optional[Tuple[Path, Path]]:
    """The (label, calib) files that belong to ``scan``, if present."""
    stem = scan.name.split(".")[0]
    candidates = [(scan.with_name(f"{stem}_label_2.txt"), scan.with_name(f"{stem}_calib.txt")),
                  (scan.parent.parent / "label_2" / f"{stem}.txt", scan.parent.parent / "calib" / f"{stem}.txt")]
    return next(((lab, cal) for lab, cal in candidates if lab.is_file() and cal.is_file()), None)


def run(args: argparse.Namespace) -> int:
    from ..data import read_points
    from ..data.kitti import read_kitti_calib, read_kitti_labels
    from ..viz import plot_bev
    from .detector_training import load_checkpoint, predict

    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        raise SystemExit(f"irregconv detect: no checkpoint at {checkpoint}; run `irregconv demo` first (it writes "
                         f"{DEFAULT_CHECKPOINT}) or pass --checkpoint PATH")
    scan = Path(args.scan)
    try:  # a missing, truncated or corrupt file is the user's to fix: one line, no traceback
        model = load_checkpoint(checkpoint)
        points = read_points(scan)
    except (OSError, ValueError) as err:
        raise SystemExit(f"irregconv detect: {err}") from err
    if points.shape[1] < model.config.num_point_features:  # e.g. PCD without intensity: pad with zeros
        points = np.concatenate([points, np.zeros((len(points), model.config.num_point_features - points.shape[1]),
                                                  np.float32)], axis=1)
    boxes, scores = predict(model, [points], score_threshold=args.score_threshold)[0]
    gt = None
    labels = find_kitti_labels(scan)
    if labels is not None:
        gt_boxes, names = read_kitti_labels(labels[0], read_kitti_calib(labels[1]))
        gt = gt_boxes[names == "Car"]
    out = Path(args.out) if args.out else Path("outputs") / f"detect_{scan.name.split('.')[0]}.png"
    plot_bev(out, points, gt, boxes, scores, point_range=model.config.point_range,
             title=f"{scan.name}: {len(boxes)} detections" + (f", {len(gt)} labelled cars" if gt is not None else ""))
    print(f"{scan}: {len(points)} points, {len(boxes)} detections (score >= {args.score_threshold})"
          + (f", {len(gt)} labelled cars drawn from {labels[0].name}" if gt is not None else ""))
    for box, score in zip(boxes, scores):
        print(f"  car {score:.2f}  x {box[0]:6.2f}  y {box[1]:6.2f}  z {box[2]:5.2f}  l {box[3]:.2f}  w {box[4]:.2f}  "
              f"h {box[5]:.2f}  yaw {box[6]:5.2f}")
    print(f"picture: {out}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="run the detector on a scan and write a BEV picture")
    parser.add_argument("--scan", required=True, help="point file: .bin, .pcd.bin, .pcd, .ply, .npy, .npz")
    parser.add_argument("--checkpoint", default=None, help=f"detector checkpoint (default: {DEFAULT_CHECKPOINT})")
    parser.add_argument("--out", default=None, help="PNG to write (default: outputs/detect_<scan>.png)")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.set_defaults(run=run)
