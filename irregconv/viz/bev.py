"""Bird's-eye-view pictures of LiDAR scans with boxes, and training curves."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _draw_boxes(ax, boxes: np.ndarray, color: str, label: str, scores: Optional[np.ndarray] = None) -> None:
    from ..data.boxes import bev_corners
    boxes = np.asarray(boxes).reshape(-1, 7)
    for k, corners in enumerate(bev_corners(boxes)):
        loop = np.vstack([corners, corners[:1]])
        ax.plot(loop[:, 0], loop[:, 1], color=color, lw=1.4, label=label if k == 0 else None)
        front = corners[[0, 3]].mean(axis=0)          # heading mark: centre -> front edge
        ax.plot([boxes[k, 0], front[0]], [boxes[k, 1], front[1]], color=color, lw=1.0)
        if scores is not None:
            ax.text(corners[:, 0].max(), corners[:, 1].max(), f"{scores[k]:.2f}", color=color, fontsize=6)


def plot_bev(path, points: np.ndarray, gt_boxes: Optional[np.ndarray] = None,
             pred_boxes: Optional[np.ndarray] = None, pred_scores: Optional[np.ndarray] = None,
             point_range: Optional[Sequence[float]] = None, voxels: Optional[np.ndarray] = None,
             voxel_values: Optional[np.ndarray] = None, voxel_size: Optional[Sequence[float]] = None,
             title: str = "") -> Path:
    """Write a BEV PNG: points coloured by height, optional voxel cells coloured by a value (e.g. feature
    magnitude), ground-truth boxes (green) and predictions (red, with scores); heading marks point forward.

    Args:
        points: ``[N, >=3]`` x, y, z.
        point_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` to crop the view.
        voxels: ``[V, 2]`` voxel (x, y) centres with ``voxel_values [V]`` and ``voxel_size``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 8), dpi=120)
    pts = np.asarray(points)
    pts = pts[np.isfinite(pts[:, :3]).all(axis=1)]
    if point_range is not None:
        lo, hi = point_range[:3], point_range[3:]
        pts = pts[(pts[:, 0] >= lo[0]) & (pts[:, 0] < hi[0]) & (pts[:, 1] >= lo[1]) & (pts[:, 1] < hi[1])]
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
    if voxels is not None and len(voxels):
        size = voxel_size[0] if voxel_size is not None else 0.2
        ax.scatter(voxels[:, 0], voxels[:, 1], c=voxel_values, s=(size * 20) ** 2, marker="s", cmap="magma",
                   alpha=0.5, linewidths=0)
    order = np.argsort(pts[:, 2])
    ax.scatter(pts[order, 0], pts[order, 1], c=pts[order, 2], s=1.2, cmap="turbo", vmin=-2.0, vmax=1.0,
               linewidths=0)
    if gt_boxes is not None:
        _draw_boxes(ax, gt_boxes, "lime", "ground truth")
    if pred_boxes is not None:
        _draw_boxes(ax, pred_boxes, "red", "prediction", pred_scores)
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    ax.set_xlabel("x (m, forward)")
    ax.set_ylabel("y (m, left)")
    if title:
        ax.set_title(title)
    if gt_boxes is not None or pred_boxes is not None:
        ax.legend(loc="upper right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training_curves(path, curves: Dict[str, Sequence[float]], title: str = "", xlabel: str = "step") -> Path:
    """One panel per named curve (e.g. loss, validation accuracy)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), dpi=110, squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items()):
        ax.plot(np.arange(1, len(values) + 1), values, lw=1.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
