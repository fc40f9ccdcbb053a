"""Training, evaluation and checkpoints of the CenterPoint-style detector on synthetic LiDAR scenes."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..data.boxes import average_precision
from ..data.lidar_scene import Scene, generate_scene
from ..models.detector import CenterPointDetector, DetectorConfig, build_targets, decode, detection_loss
from .progress import ProgressBar

#: ground-truth cars need this many LiDAR points to count (KITTI-style "hard" cut-off for unseen objects)
MIN_POINTS_PER_OBJECT = 5


@dataclass
class LabelledScan:
    points: np.ndarray   #: ``[N, F]``
    boxes: np.ndarray    #: ``[M, 7]`` cars only


def labelled_scans(seeds, config: DetectorConfig) -> List[LabelledScan]:
    """Synthetic scenes with their visible cars inside the detection range."""
    lo, hi = config.point_range[:3], config.point_range[3:]
    scans = []
    for seed in seeds:
        scene: Scene = generate_scene(int(seed))
        boxes = scene.boxes[(scene.labels == 0) & (scene.num_points_in_box >= MIN_POINTS_PER_OBJECT)]
        inside = (boxes[:, 0] >= lo[0]) & (boxes[:, 0] < hi[0]) & (boxes[:, 1] >= lo[1]) & (boxes[:, 1] < hi[1])
        scans.append(LabelledScan(scene.points, boxes[inside]))
    return scans


def augment(scan: LabelledScan, rng: np.random.Generator) -> LabelledScan:
    """Random mirror across the x axis and a small rotation about z (boxes follow the points)."""
    points, boxes = scan.points.copy(), scan.boxes.copy()
    if rng.random() < 0.5:
        points[:, 1] *= -1
        boxes[:, 1] *= -1
        boxes[:, 6] *= -1
    angle = rng.uniform(-np.pi / 12, np.pi / 12)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]], dtype=np.float32)
    points[:, :2] = points[:, :2] @ rot.T
    boxes[:, :2] = boxes[:, :2] @ rot.T
    boxes[:, 6] += angle
    return LabelledScan(points, boxes)


def train_detector(model: CenterPointDetector, scans: List[LabelledScan], steps: int, batch_size: int = 4,
                   lr: float = 3e-3, seed: int = 0, progress: bool = True) -> List[float]:
    """Adam with a one-cycle schedule over ``steps`` batches; returns the loss of every step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.3)
    losses = []
    start = time.perf_counter()
    bar = ProgressBar(steps, "detector") if progress else None
    for step in range(steps):
        batch = [augment(scans[i], rng) for i in rng.choice(len(scans), batch_size, replace=False)]
        voxels = model.voxelize([b.points for b in batch])
        heatmap, regression = model(voxels)
        loss, _ = detection_loss(heatmap, regression, build_targets(model.config, [b.boxes for b in batch]))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if bar is not None:
            rate = (step + 1) * batch_size / (time.perf_counter() - start)
            bar.update(step + 1, f"loss {losses[-1]:.3f}  {rate:.1f} scenes/s")
    if bar is not None:
        bar.close()
    return losses


@torch.no_grad()
def predict(model: CenterPointDetector, points: List[np.ndarray], batch_size: int = 8,
            score_threshold: float = 0.1) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Boxes ``[P, 7]`` and scores ``[P]`` for each scan."""
    model.eval()
    out = []
    for i in range(0, len(points), batch_size):
        heatmap, regression = model(model.voxelize(points[i:i + batch_size]))
        out += decode(model.config, heatmap, regression, score_threshold)
    return out


def evaluate_detector(model: CenterPointDetector, scans: List[LabelledScan], iou_threshold: float = 0.5):
    """BEV AP at ``iou_threshold`` over ``scans``, and the predictions."""
    predictions = predict(model, [s.points for s in scans])
    ap = average_precision([p[0] for p in predictions], [p[1] for p in predictions], [s.boxes for s in scans],
                           iou_threshold)
    return ap, predictions


def save_checkpoint(model: CenterPointDetector, path) -> Path:
    """``path`` (torch state dict) plus ``path.json`` (the DetectorConfig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(model.config.to_dict(), indent=2))
    return path


def load_checkpoint(path) -> CenterPointDetector:
    """Inverse of :func:`save_checkpoint`; clear errors for missing, truncated or mismatched files."""
    path = Path(path)
    config_path = path.with_suffix(path.suffix + ".json")
    for p in (path, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"load_checkpoint: missing {p} (a checkpoint is the state dict plus its "
                                    f"JSON config written by save_checkpoint)")
    try:
        config = DetectorConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"load_checkpoint: {config_path} is not a valid detector config: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or corrupt zip
        raise ValueError(f"load_checkpoint: {path} is truncated or not a torch checkpoint ({exc})") from exc
    model = CenterPointDetector(config)
    model.load_state_dict(state)
    return model
