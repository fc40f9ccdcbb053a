"""``irregconv demo [--quick] [--out DIR]``: the main job end to end, on embedded synthetic data.

No data files, no network:

1. synthetic 64-beam LiDAR scenes -> voxelize -> SECOND sparse backbone -> BEV -> CenterPoint-style head,
   trained on the CPU, evaluated on held-out scenes (BEV AP at IoU 0.5 for cars), with a picture of one
   test scene, one of the voxels coloured by their first-layer features, and the training curve;
2. a two-layer GCN on a synthetic Cora-like graph, trained and tested, with its training curves.

The same seed gives the same numbers (the engine is deterministic for any thread count).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.detector import CenterPointDetector, DetectorConfig


@dataclass(frozen=True)
class DemoSizes:
    train_scenes: int     #: distinct training scenes (augmented anew at every draw)
    test_scenes: int      #: held-out scenes for the AP
    steps: int            #: optimizer steps of ``batch_size`` scenes
    batch_size: int
    gcn_epochs: int


FULL = DemoSizes(train_scenes=200, test_scenes=60, steps=300, batch_size=4, gcn_epochs=200)
QUICK = DemoSizes(train_scenes=48, test_scenes=16, steps=60, batch_size=4, gcn_epochs=100)
#: detections drawn in the picture (the AP uses every detection above the decoder's threshold)
PICTURE_SCORE = 0.3
#: seeds of held-out scenes start here, far from the training seeds
TEST_SEED_OFFSET = 1_000_000


def _voxel_picture(model: CenterPointDetector, points: np.ndarray, path: Path) -> Path:
    """BEV of the voxels coloured by the largest first-layer feature magnitude in each column."""
    from ..viz import plot_bev
    cfg = model.config
    model.eval()
    with torch.no_grad():
        voxels = model.voxelize([points])
        first = model.backbone.conv_input(voxels)
    yx = voxels.coords[:, 2:].double().cpu().numpy()
    centres = np.stack([cfg.point_range[0] + (yx[:, 1] + 0.5) * cfg.voxel_size[0],
                        cfg.point_range[1] + (yx[:, 0] + 0.5) * cfg.voxel_size[1]], axis=1)
    return plot_bev(path, points[:0], point_range=cfg.point_range, voxels=centres,
                    voxel_values=first.feats.norm(dim=1).cpu().numpy(), voxel_size=cfg.voxel_size,
                    title=f"{len(centres)} voxels, coloured by first-layer feature magnitude")


def _detection(args: argparse.Namespace, sizes: DemoSizes, out: Path) -> list:
    from ..viz import plot_bev, plot_training_curve
    from .detector_training import evaluate_detector, labelled_scans, save_checkpoint, train_detector

    config = DetectorConfig()
    (x0, y0, z0, x1, y1, z1), grid = config.point_range, config.grid
    print(f"[1/2] 3D detection on synthetic 64-beam LiDAR: {sizes.train_scenes} training scenes, "
          f"{sizes.test_scenes} held-out test scenes", flush=True)
    print(f"      range x [{x0:g}, {x1:g}] y [{y0:g}, {y1:g}] z [{z0:g}, {z1:g}] m, voxels "
          f"{' x '.join(f'{v:g}' for v in config.voxel_size)} m, grid (Z, Y, X) = {grid}, BEV "
          f"{config.bev_shape[0]} x {config.bev_shape[1]} cells of {config.bev_cell[0]:g} m", flush=True)
    t = time.perf_counter()
    train = labelled_scans(range(args.seed, args.seed + sizes.train_scenes), config)
    test = labelled_scans(range(TEST_SEED_OFFSET + args.seed, TEST_SEED_OFFSET + args.seed + sizes.test_scenes),
                          config)
    print(f"      scenes generated in {time.perf_counter() - t:.1f} s: {sum(len(s.boxes) for s in train)} training "
          f"and {sum(len(s.boxes) for s in test)} test cars, {np.mean([len(s.points) for s in test]):.0f} points "
          f"per scene", flush=True)
    torch.manual_seed(args.seed)
    model = CenterPointDetector(config)
    print(f"      model: SECOND sparse backbone + BEV neck + CenterPoint head, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    t = time.perf_counter()
    losses = train_detector(model, train, sizes.steps, batch_size=sizes.batch_size, seed=args.seed)
    seconds = time.perf_counter() - t
    print(f"      trained {sizes.steps} steps x {sizes.batch_size} scenes in {seconds:.0f} s "
          f"({sizes.steps * sizes.batch_size / seconds:.1f} scenes/s, {torch.get_num_threads()} threads); "
          f"loss {np.mean(losses[:10]):.2f} -> {np.mean(losses[-10:]):.2f}", flush=True)
    t = time.perf_counter()
    ap, predictions = evaluate_detector(model, test, iou_threshold=0.5)
    print(f"      BEV AP@0.5 (Car, 40 recall points) on {len(test)} held-out scenes: {ap:.3f}  (target >= 0.70; "
          f"evaluated in {time.perf_counter() - t:.1f} s)", flush=True)

    checkpoint = save_checkpoint(model, out / "detector.pt")
    shown = predictions[0].scores >= PICTURE_SCORE
    scene_png = plot_bev(out / "detection_bev.png", test[0].points, test[0].boxes, predictions[0].boxes[shown],
                         predictions[0].scores[shown], point_range=config.point_range,
                         title=f"held-out scene: ground truth (green), detections >= {PICTURE_SCORE} (red); "
                               f"AP@0.5 {ap:.2f}")
    voxel_png = _voxel_picture(model, test[0].points, out / "voxel_features_bev.png")
    curve_png = plot_training_curve(losses, out / "detector_training.png", name="loss (focal + L1)",
                                    title="detector training")
    return [checkpoint, Path(str(checkpoint) + ".json"), scene_png, voxel_png, curve_png]


def _gcn(args: argparse.Namespace, sizes: DemoSizes, out: Path) -> list:
    from ..data.synthetic_graph import make_cora_like
    from ..viz import plot_training_curves
    from .cora import train_gcn
    from .progress import ProgressBar

    graph = make_cora_like(seed=args.seed)
    print(f"[2/2] GCN (Kipf & Welling, 2 layers x 16) on a synthetic Cora-like graph: {graph.num_nodes} nodes, "
          f"{graph.edge_index.size(1) // 2} edges, {int(graph.train_mask.sum())} training labels", flush=True)
    bar = ProgressBar(sizes.gcn_epochs, "gcn")
    t = time.perf_counter()
    result = train_gcn(graph, seed=args.seed, epochs=sizes.gcn_epochs, on_epoch=lambda e: bar.update(e))
    bar.close()
    print(f"      test accuracy {result['test_acc']:.3f} (epoch {result['best_epoch']} chosen on validation "
          f"accuracy {result['val_acc']:.3f}; {time.perf_counter() - t:.1f} s)", flush=True)
    curve_png = plot_training_curves(out / "gcn_training.png", {"training loss": result["losses"],
                                                                "validation accuracy": result["val_curve"]},
                                     title="GCN on the synthetic Cora-like graph", xlabel="epoch")
    return [curve_png]


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"irregconv demo ({'quick' if args.quick else 'full'}, seed {args.seed}, {torch.get_num_threads()} "
          f"threads)", flush=True)
    outputs = _detection(args, sizes, out) + _gcn(args, sizes, out)
    print(f"outputs in {out}/:")
    for path in outputs:
        print(f"  {path}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0


def add_parser(subparsers) -> None:
    summary = "train and evaluate a sparse 3D detector and a GCN on embedded synthetic data"
    parser = subparsers.add_parser("demo", help=summary, description=summary[0].upper() + summary[1:] + ".")
    parser.add_argument("--quick", action="store_true", help="a one-minute version (fewer scenes and steps)")
    parser.add_argument("--out", default="outputs/demo", help="folder for the checkpoint and pictures "
                                                              "(default: outputs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenes, initialisation and sampling (default: 0)")
    parser.set_defaults(run=run)
