"""Training, evaluation and checkpoints of :class:`~irregconv.models.detector.CenterPointDetector`.

Data are synthetic LiDAR scenes (:func:`irregconv.data.lidar_scene.generate_scene`) or any list of
:class:`LabelledScan`; a checkpoint is a ``torch.save`` state dict plus a JSON file with the
:class:`~irregconv.models.detector.DetectorConfig` next to it.
"""
from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..data.boxes import average_precision
from ..data.lidar_scene import CLASSES, SceneConfig, generate_scene
from ..io import save_atomic, write_text_atomic
from ..models.detector import (CenterPointDetector, DetectorConfig, Detections, build_targets, decode,
                               detection_loss)
from .progress import ProgressBar

#: a labelled object needs this many LiDAR returns to count (one that no ray reached cannot be detected)
MIN_POINTS_PER_OBJECT = 5


@dataclass
class LabelledScan:
    """A point cloud with its boxes.

    Attributes:
        points: ``[N, F]`` float32, x, y, z first.
        boxes: ``[M, 7]`` ``(x, y, z, l, w, h, yaw)``.
        labels: ``[M]`` int64 indices into the detector's ``class_names``.
    """
    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def labelled_scans(seeds: Iterable[int], config: DetectorConfig,
                   scene_config: SceneConfig = SceneConfig()) -> List[LabelledScan]:
    """Synthetic scenes with their objects of ``config.class_names`` that have at least
    :data:`MIN_POINTS_PER_OBJECT` returns and a centre inside ``config.point_range`` (in x and y)."""
    unknown = [c for c in config.class_names if c not in CLASSES]
    if unknown:
        raise ValueError(f"labelled_scans: synthetic scenes have classes {CLASSES}, the detector asks for {unknown}")
    lo, hi = config.point_range[:3], config.point_range[3:]
    to_detector = {CLASSES.index(name): k for k, name in enumerate(config.class_names)}
    scans = []
    for seed in seeds:
        scene = generate_scene(int(seed), scene_config)
        keep = np.isin(scene.labels, list(to_detector)) & (scene.num_points_in_box >= MIN_POINTS_PER_OBJECT)
        keep &= (scene.boxes[:, 0] >= lo[0]) & (scene.boxes[:, 0] < hi[0])
        keep &= (scene.boxes[:, 1] >= lo[1]) & (scene.boxes[:, 1] < hi[1])
        labels = np.array([to_detector[int(c)] for c in scene.labels[keep]], dtype=np.int64)
        scans.append(LabelledScan(scene.points, scene.boxes[keep], labels))
    return scans


def augment(scan: LabelledScan, rng: np.random.Generator) -> LabelledScan:
    """Random mirror across the x axis, rotation about z by up to 22.5 degrees and scaling by 0.95..1.05
    (boxes follow the points)."""
    points, boxes = scan.points.copy(), scan.boxes.astype(np.float32).copy()
    if rng.random() < 0.5:
        points[:, 1] *= -1
        boxes[:, 1] *= -1
        boxes[:, 6] *= -1
    angle = rng.uniform(-np.pi / 8, np.pi / 8)
    scale = rng.uniform(0.95, 1.05)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]], dtype=np.float32)
    points[:, :2] = points[:, :2] @ rotation.T
    boxes[:, :2] = boxes[:, :2] @ rotation.T
    boxes[:, 6] += angle
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    return LabelledScan(points, boxes, scan.labels)


def batch_loss(model: CenterPointDetector, scans: Sequence[LabelledScan],
               normalise_count: Optional[Callable[[int], float]] = None,
               network: Optional[nn.Module] = None) -> Tuple[Tensor, Dict[str, float]]:
    """Voxelize ``scans``, run the detector and return :func:`~irregconv.models.detector.detection_loss`.

    Args:
        model (CenterPointDetector): the detector (its config and voxelization).
        scans (list of LabelledScan): the batch.
        normalise_count (callable, optional): maps the batch's number of objects to the loss normaliser
            (default: the number itself). Data-parallel training passes "all-reduce it and divide by the
            number of processes", so that the processes' mean gradient is the whole batch's gradient.
        network (nn.Module, optional): the module to call instead of ``model``, e.g. its
            ``DistributedDataParallel`` wrapper (default: ``model``).
    """
    heatmap, regression = (model if network is None else network)(model.voxelize([s.points for s in scans]))
    targets = build_targets(model.config, [s.boxes for s in scans], [s.labels for s in scans])
    normaliser = None if normalise_count is None else normalise_count(targets.num_objects)
    return detection_loss(heatmap, regression, targets, normaliser=normaliser)


def train_detector(model: CenterPointDetector, scans: Sequence[LabelledScan], steps: int, batch_size: int = 4,
                   lr: float = 3e-3, seed: int = 0, progress: bool = True,
                   on_step: Optional[Callable[[int, float], None]] = None) -> List[float]:
    """Train on random batches of augmented ``scans`` with AdamW and a one-cycle learning rate.

    Args:
        model (CenterPointDetector): trained in place.
        scans (list of LabelledScan): the training pool (at least ``batch_size``).
        steps (int): optimizer steps.
        batch_size (int): scenes per step (default: 4).
        lr (float): peak learning rate (default: 3e-3).
        seed (int): seeds the batch sampling and augmentation (default: 0).
        progress (bool): draw a progress bar with the loss and scenes/s on stderr (default: True).
        on_step (callable, optional): called with ``(step, loss)`` after each step.

    Returns:
        list of float: the loss of every step.
    """
    if steps < 1 or batch_size < 1 or len(scans) < batch_size:
        raise ValueError(f"train_detector: need steps >= 1 and 1 <= batch_size <= len(scans), got steps={steps}, "
                         f"batch_size={batch_size}, {len(scans)} scans")
    rng = np.random.default_rng(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.3)
    losses: List[float] = []
    bar = ProgressBar(steps, "detector") if progress else None
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = [augment(scans[i], rng) for i in rng.choice(len(scans), batch_size, replace=False)]
        loss, _ = batch_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(step, f"loss {losses[-1]:.3f}  {step * batch_size / (time.perf_counter() - start):.1f} scenes/s")
        if on_step is not None:
            on_step(step, losses[-1])
    if bar is not None:
        bar.close()
    return losses


@torch.no_grad()
def predict(model: CenterPointDetector, points: Sequence[np.ndarray], batch_size: int = 8,
            **decode_options) -> List[Detections]:
    """Detections for each scan, in eval mode; ``decode_options`` go to
    :func:`~irregconv.models.detector.decode` (``score_threshold``, ``nms``, ...)."""
    model.eval()
    out: List[Detections] = []
    for i in range(0, len(points), batch_size):
        heatmap, regression = model(model.voxelize(points[i:i + batch_size]))
        out += decode(model.config, heatmap, regression, **decode_options)
    return out


def evaluate_detector(model: CenterPointDetector, scans: Sequence[LabelledScan], iou_threshold: float = 0.5,
                      label: int = 0, **decode_options) -> Tuple[float, List[Detections]]:
    """BEV average precision of class ``label`` at ``iou_threshold`` over ``scans`` (KITTI's 40 recall
    positions), and the detections."""
    predictions = predict(model, [s.points for s in scans], **decode_options)
    ap = average_precision([p.boxes[p.labels == label] for p in predictions],
                           [p.scores[p.labels == label] for p in predictions],
                           [s.boxes[s.labels == label] for s in scans], iou_threshold)
    return ap, predictions


def _config_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(model: CenterPointDetector, path) -> Path:
    """Write ``path`` (the state dict, ``torch.save``) and ``path.json`` (the DetectorConfig); return ``path``.

    Each file is written atomically (:func:`irregconv.io.atomic_write`): a crash or a full disk mid-save
    leaves the previous checkpoint loadable."""
    path = save_atomic(model.state_dict(), path)
    write_text_atomic(_config_path(path), json.dumps(model.config.to_dict(), indent=2) + "\n")
    return path


def load_checkpoint(path, device="cpu") -> CenterPointDetector:
    """Inverse of :func:`save_checkpoint`: a detector on ``device``, in eval mode.

    Raises:
        FileNotFoundError: ``path`` or ``path.json`` is missing.
        ValueError: the config is not a valid DetectorConfig, the state dict is truncated, corrupt (a CRC
            mismatch) or not a torch file, or its tensors do not fit the config.
    """
    path = Path(path)
    config_path = _config_path(path)
    for p in (path, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"load_checkpoint: missing {p}; a checkpoint is the state dict plus the JSON "
                                    f"config that save_checkpoint writes next to it")
    try:
        config = DetectorConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"load_checkpoint: {config_path} is not a valid detector config: {exc}") from None
    if zipfile.is_zipfile(path):
        # torch.load does not check the archive's CRCs: a flipped byte in the tensor data would load silently
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except zipfile.BadZipFile as exc:   # a damaged record header
            damaged = str(exc)
        if damaged is not None:
            raise ValueError(f"load_checkpoint: {path} is corrupt: record {damaged!r} fails the zip CRC / header check "
                             f"(the bytes changed after saving); save the checkpoint again or restore a good copy")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or corrupt file
        raise ValueError(f"load_checkpoint: {path} is truncated or not a torch checkpoint ({exc})") from None
    model = CenterPointDetector(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"load_checkpoint: the tensors in {path} do not fit its config {config_path}: {exc}") from None
    return model.to(device).eval()
