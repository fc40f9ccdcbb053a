"""``irregconv demo``: the main job end to end, with embedded synthetic data (no files, no network).

1. synthetic 64-beam LiDAR scenes -> voxelize -> sparse backbone -> BEV -> CenterPoint-style head, trained
   on CPU, evaluated on held-out scenes (BEV AP at IoU 0.5 for cars), pictures of one test scene;
2. a GCN on a synthetic Cora-like graph, trained and tested, with its training curve.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..models.detector import CenterPointDetector, DetectorConfig

FULL = dict(train_scenes=160, test_scenes=50, steps=500)
QUICK = dict(train_scenes=40, test_scenes=15, steps=60)


def _feature_picture(model: CenterPointDetector, points: np.ndarray, path: Path) -> Path:
    """BEV of the voxels coloured by the magnitude of their first-layer features."""
    from ..viz import plot_bev
    cfg = model.config
    model.eval()
    with torch.no_grad():
        voxels = model.voxelize([points])
        first = model.backbone[:3](voxels)
    zyx = voxels.coords[:, 1:].double().numpy()
    centres = np.stack([cfg.point_range[0] + (zyx[:, 2] + 0.5) * cfg.voxel_size[0],
                        cfg.point_range[1] + (zyx[:, 1] + 0.5) * cfg.voxel_size[1]], axis=1)
    return plot_bev(path, points[:0], point_range=cfg.point_range, voxels=centres,
                    voxel_values=first.feats.norm(dim=1).numpy(), voxel_size=cfg.voxel_size,
                    title="voxels coloured by first-layer feature magnitude")


def run(args: argparse.Namespace) -> int:
    from ..apps.cora import train_gcn
    from ..apps.detector_training import evaluate_detector, labelled_scans, save_checkpoint, train_detector
    from ..data.synthetic_graph import make_cora_like
    from ..viz import plot_bev, plot_training_curves

    start = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    config = DetectorConfig()
    print(f"irregconv demo ({'quick' if args.quick else 'full'}), {torch.get_num_threads()} threads, outputs in {out}/")

    print(f"[1/2] 3D detection: {sizes['train_scenes']} training and {sizes['test_scenes']} test scenes "
          f"(synthetic 64-beam LiDAR), range {config.point_range}, voxel {config.voxel_size} m")
    t = time.perf_counter()
    train = labelled_scans(range(args.seed, args.seed + sizes["train_scenes"]), config)
    test = labelled_scans(range(100_000 + args.seed, 100_000 + args.seed + sizes["test_scenes"]), config)
    print(f"      generated in {time.perf_counter() - t:.1f} s; {sum(len(s.boxes) for s in test)} test cars")
    model = CenterPointDetector(config)
    t = time.perf_counter()
    losses = train_detector(model, train, sizes["steps"], batch_size=4, seed=args.seed)
    train_time = time.perf_counter() - t
    print(f"      trained {sizes['steps']} steps in {train_time:.0f} s "
          f"({sizes['steps'] * 4 / train_time:.1f} scenes/s)")
    ap, predictions = evaluate_detector(model, test)
    print(f"      BEV AP@0.5 (Car) on {len(test)} held-out scenes: {ap:.3f}  (target >= 0.70)")
    checkpoint = save_checkpoint(model, out / "detector.pt")
    scene_png = plot_bev(out / "detection_bev.png", test[0].points, test[0].boxes, predictions[0][0],
                         predictions[0][1], point_range=config.point_range,
                         title=f"test scene: ground truth (green), predictions (red); AP@0.5 {ap:.2f}")
    voxel_png = _feature_picture(model, test[0].points, out / "voxel_features_bev.png")
    det_curve = plot_training_curves(out / "detector_training.png", {"loss": losses},
                                     title="detector training loss")

    print("[2/2] GCN on a synthetic Cora-like graph (degree-corrected SBM, 2708 nodes, 140 training labels)")
    graph = make_cora_like(seed=args.seed)
    result = train_gcn(graph, seed=args.seed, epochs=200)
    print(f"      test accuracy {result['test_acc']:.3f} (model selected at epoch {result['best_epoch']} on "
          f"validation accuracy {result['val_acc']:.3f})")
    gcn_curve = plot_training_curves(out / "gcn_training.png", {"training loss": result["losses"],
                                                                "validation accuracy": result["val_curve"]},
                                     title="GCN on the synthetic Cora-like graph", xlabel="epoch")

    print("outputs:")
    for path in (checkpoint, scene_png, voxel_png, det_curve, gcn_curve):
        print(f"  {path}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train and evaluate a sparse 3D detector and a GCN on synthetic data")
    parser.add_argument("--quick", action="store_true", help="a one-minute version (fewer scenes and steps)")
    parser.add_argument("--out", default="outputs/demo", help="folder for the checkpoint and pictures")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)
