"""Bird's-eye-view pictures of LiDAR scans, voxels and boxes, and training curves (matplotlib, Agg).

Everything draws into a fresh figure on the non-interactive Agg backend and writes a PNG, so it works
on machines without a display and never touches the caller's pyplot state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

GT_COLOR = "lime"
PRED_COLOR = "red"
COLOR_BY = ("height", "intensity")


def _figure(**kwargs):
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    """Write ``fig`` as a PNG at ``path``, whole or not at all (:func:`irregconv.io.atomic_write`)."""
    from ..io import atomic_write
    path = Path(path)
    fig.tight_layout()
    with atomic_write(path) as file:
        fig.savefig(file, format="png")
    return path


def _draw_boxes(ax, boxes: np.ndarray, color: str, label: str, scores: Optional[np.ndarray] = None) -> None:
    """Box outlines with a heading mark from the centre to the middle of the front edge."""
    from ..data.boxes import bev_corners
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    for k, corners in enumerate(bev_corners(boxes)):
        loop = np.vstack([corners, corners[:1]])
        ax.plot(loop[:, 0], loop[:, 1], color=color, lw=1.0, label=label if k == 0 else None)
        front = corners[[0, 3]].mean(axis=0)
        ax.plot([boxes[k, 0], front[0]], [boxes[k, 1], front[1]], color=color, lw=1.0)
        if scores is not None:
            ax.text(corners[:, 0].max(), corners[:, 1].max(), f"{float(scores[k]):.2f}", color=color, fontsize=6)


def _voxel_image(voxels: np.ndarray, values: np.ndarray, voxel_size: Sequence[float], extent: Sequence[float]):
    """Rasterize voxel (x, y) centres onto their BEV cells: the maximum value per column, NaN elsewhere."""
    x0, x1, y0, y1 = extent
    dx, dy = float(voxel_size[0]), float(voxel_size[1])
    width, height = max(int(np.ceil((x1 - x0) / dx)), 1), max(int(np.ceil((y1 - y0) / dy)), 1)
    col = np.floor((voxels[:, 0] - x0) / dx).astype(np.int64)
    row = np.floor((voxels[:, 1] - y0) / dy).astype(np.int64)
    ok = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    image = np.full(height * width, -np.inf)
    np.maximum.at(image, row[ok] * width + col[ok], values[ok])
    image[np.isinf(image)] = np.nan
    return image.reshape(height, width), (x0, x0 + width * dx, y0, y0 + height * dy)


def plot_bev(path: Union[str, Path], points: np.ndarray, gt_boxes: Optional[np.ndarray] = None,
             pred_boxes: Optional[np.ndarray] = None, pred_scores: Optional[np.ndarray] = None,
             point_range: Optional[Sequence[float]] = None, voxels: Optional[np.ndarray] = None,
             voxel_values: Optional[np.ndarray] = None, voxel_size: Optional[Sequence[float]] = None,
             title: str = "", color_by: str = "height", dpi: int = 120) -> Path:
    """Write a bird's-eye-view PNG of a scan.

    Points are coloured by height (z) or intensity (column 3); voxels, when given, are drawn as their
    true BEV cells coloured by a value (e.g. feature magnitude, the maximum over each column);
    ground-truth boxes are green, predictions red with their scores; a line from each box centre to
    the middle of its front edge marks the heading.

    Args:
        path: PNG to write (folders are created).
        points: ``[N, >= 3]`` x, y, z (then intensity); non-finite points are skipped.
        gt_boxes, pred_boxes: ``[M, 7]`` boxes ``(x, y, z, l, w, h, yaw)``.
        pred_scores: ``[M_pred]`` confidences printed next to the predictions.
        point_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)``: the view (and crop).
        voxels: ``[V, 2]`` voxel (x, y) centres in metres, with ``voxel_values [V]`` and
            ``voxel_size`` (dx, dy, ...).
        title (str): figure title.
        color_by (str): ``"height"`` or ``"intensity"`` (default: ``"height"``).
        dpi (int): resolution of the 8 x 8 inch figure (default: 120).

    Returns:
        Path: ``path``.
    """
    if color_by not in COLOR_BY:
        raise ValueError(f"plot_bev: color_by must be one of {COLOR_BY}, got {color_by!r}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < (4 if color_by == "intensity" else 3):
        raise ValueError(f"plot_bev: points must be [N, >= 3] (x, y, z, and intensity in column 3 for "
                         f"color_by='intensity'), got shape {pts.shape}")
    if voxels is not None and (voxel_values is None or voxel_size is None or len(voxel_values) != len(voxels)):
        raise ValueError("plot_bev: voxels [V, 2] need voxel_values [V] and voxel_size (dx, dy, ...)")
    pts = pts[np.isfinite(pts[:, :3]).all(axis=1)]
    fig = _figure(figsize=(8, 8), dpi=dpi)
    ax = fig.add_subplot()
    if point_range is not None:
        lo, hi = point_range[:3], point_range[3:]
        pts = pts[(pts[:, 0] >= lo[0]) & (pts[:, 0] < hi[0]) & (pts[:, 1] >= lo[1]) & (pts[:, 1] < hi[1])]
        extent = (lo[0], hi[0], lo[1], hi[1])
    elif voxels is not None and len(voxels):
        half_x, half_y = float(voxel_size[0]) / 2, float(voxel_size[1]) / 2
        extent = (voxels[:, 0].min() - half_x, voxels[:, 0].max() + half_x,
                  voxels[:, 1].min() - half_y, voxels[:, 1].max() + half_y)
    else:
        extent = None
    if voxels is not None and len(voxels):
        image, box = _voxel_image(np.asarray(voxels, np.float64), np.asarray(voxel_values, np.float64),
                                  voxel_size, extent)
        shown = ax.imshow(image, origin="lower", extent=box, cmap="viridis", interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, label="voxel value")
    if len(pts):
        order = np.argsort(pts[:, 2])          # high points drawn last, on top
        if color_by == "height":
            colors, vmin, vmax = pts[order, 2], -2.0, 1.0
        else:
            colors, vmin, vmax = pts[order, 3], 0.0, max(float(np.percentile(pts[:, 3], 99)), 1e-6)
        # above the box outlines: points on an object's faces lie on its edges in BEV
        ax.scatter(pts[order, 0], pts[order, 1], c=colors, s=1.2, cmap="turbo", vmin=vmin, vmax=vmax,
                   linewidths=0, zorder=3)
    if gt_boxes is not None:
        _draw_boxes(ax, gt_boxes, GT_COLOR, "ground truth")
    if pred_boxes is not None:
        _draw_boxes(ax, pred_boxes, PRED_COLOR, "prediction", pred_scores)
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    ax.set_xlabel("x (m, forward)")
    ax.set_ylabel("y (m, left)")
    if title:
        ax.set_title(title)
    if (gt_boxes is not None and len(gt_boxes)) or (pred_boxes is not None and len(pred_boxes)):
        ax.legend(loc="upper right", fontsize=7)
    return _save(fig, path)


def plot_training_curves(path: Union[str, Path], curves: Dict[str, Sequence[float]], title: str = "",
                         xlabel: str = "step") -> Path:
    """One panel per named curve (e.g. ``{"loss": [...], "validation accuracy": [...]}``), written as PNG."""
    if not curves:
        raise ValueError("plot_training_curves: curves is empty; give {name: values}")
    fig = _figure(figsize=(5 * len(curves), 3.5), dpi=110)
    for k, (name, values) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), k + 1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        ax.plot(np.arange(1, len(values) + 1), values, lw=1.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_training_curve(values: Sequence[float], path: Union[str, Path], name: str = "loss", title: str = "",
                        xlabel: str = "step") -> Path:
    """A single curve (e.g. the loss of every step) as PNG; see :func:`plot_training_curves` for several."""
    return plot_training_curves(path, {name: values}, title=title, xlabel=xlabel)
