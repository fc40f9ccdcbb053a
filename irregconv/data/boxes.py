"""Box geometry for 3D detection: BEV corners, points in boxes, rotated BEV IoU and average precision.

Boxes are ``[M, 7]`` rows ``(x, y, z, l, w, h, yaw)`` in the LiDAR frame: ``(x, y, z)`` the box centre,
``l`` along the heading, ``w`` across it, ``yaw`` the heading angle from +x towards +y (KITTI / OpenPCDet
LiDAR convention).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_EPS = 1e-9


def _as_boxes(boxes, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 7)
    if array.ndim != 2 or array.shape[1] != 7:
        raise ValueError(f"{name} must be boxes [M, 7] (x, y, z, l, w, h, yaw), got shape {array.shape}")
    return array


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """``[M, 7]`` boxes -> ``[M, 4, 2]`` BEV corners, counter-clockwise, starting front-left
    (``+l/2, +w/2`` in the box frame); corners 0 and 3 span the front edge."""
    boxes = _as_boxes(boxes, "bev_corners: boxes")
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    dx = local[None, :, 0] * boxes[:, None, 3]
    dy = local[None, :, 1] * boxes[:, None, 4]
    x = boxes[:, None, 0] + dx * c[:, None] - dy * s[:, None]
    y = boxes[:, None, 1] + dx * s[:, None] + dy * c[:, None]
    return np.stack([x, y], axis=-1)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N, M]`` bool: point n lies inside 3D box m (boundaries included).

    Args:
        points: ``[N, >= 3]`` x, y, z first.
        boxes: ``[M, 7]``.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points_in_boxes: points must be [N, >= 3] (x, y, z first), got shape {points.shape}")
    boxes = _as_boxes(boxes, "points_in_boxes: boxes")
    rel = points[:, None, :3].astype(np.float64) - boxes[None, :, :3]         # [N, M, 3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    along = rel[..., 0] * c + rel[..., 1] * s
    across = -rel[..., 0] * s + rel[..., 1] * c
    return ((np.abs(along) <= boxes[:, 3] / 2) & (np.abs(across) <= boxes[:, 4] / 2)
            & (np.abs(rel[..., 2]) <= boxes[:, 5] / 2))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(points: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """``[P, 4]`` bool: each of the 4 points of pair p lies in (or on) the CCW quad ``quads[p]``."""
    edges = np.roll(quads, -1, axis=1) - quads                                     # [P, 4, 2]
    side = _cross(edges[:, None, :, :], points[:, :, None, :] - quads[:, None, :, :])   # [P, 4 pts, 4 edges]
    scale = np.abs(edges).max(axis=(1, 2))[:, None, None] ** 2
    return (side >= -_EPS * scale).all(axis=2)


def quad_intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Areas ``[P]`` of the intersections of convex CCW quads ``a[p]`` and ``b[p]`` (``[P, 4, 2]`` each).

    The intersection polygon's vertices are the corners of each quad inside the other and the
    crossings of their edges (at most 8 of the 24 candidates); sorted by angle around their mean, they
    give the area by the shoelace formula. Every pair is handled at once, with masks.
    """
    if len(a) == 0:
        return np.zeros(0)
    da = np.roll(a, -1, axis=1) - a                                                # [P, 4, 2] edges
    db = np.roll(b, -1, axis=1) - b
    # edge i of a against edge j of b: a_i + s da_i = b_j + u db_j
    denom = _cross(da[:, :, None, :], db[:, None, :, :])                           # [P, 4, 4]
    diff = b[:, None, :, :] - a[:, :, None, :]
    scale = np.abs(da).max(axis=(1, 2)) * np.abs(db).max(axis=(1, 2))
    parallel = np.abs(denom) <= _EPS * scale[:, None, None]
    safe = np.where(parallel, 1.0, denom)
    s = _cross(diff, db[:, None, :, :]) / safe
    u = _cross(diff, da[:, :, None, :]) / safe
    crossing = ~parallel & (s >= -_EPS) & (s <= 1 + _EPS) & (u >= -_EPS) & (u <= 1 + _EPS)
    crossings = a[:, :, None, :] + s[..., None] * da[:, :, None, :]               # [P, 4, 4, 2]
    candidates = np.concatenate([a, b, crossings.reshape(-1, 16, 2)], axis=1)     # [P, 24, 2]
    valid = np.concatenate([_inside(a, b), _inside(b, a), crossing.reshape(-1, 16)], axis=1)
    count = valid.sum(axis=1)
    centre = (candidates * valid[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    rel = candidates - centre[:, None, :]
    angle = np.where(valid, np.arctan2(rel[..., 1], rel[..., 0]), np.inf)         # invalid ones sort last
    order = np.argsort(angle, axis=1, kind="stable")
    ring = np.take_along_axis(rel, order[..., None], axis=1)
    # the tail of invalid slots repeats the first vertex: zero-area steps that close the polygon
    tail = np.arange(ring.shape[1])[None, :] >= count[:, None]
    ring = np.where(tail[..., None], ring[:, :1, :], ring)
    area = 0.5 * np.abs(_cross(ring, np.roll(ring, -1, axis=1)).sum(axis=1))
    return np.where(count >= 3, area, 0.0)


def bev_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Rotated bird's-eye-view IoU matrix ``[M_a, M_b]`` of boxes ``(x, y, z, l, w, h, yaw)``.

    Pairs whose circumscribed circles do not meet get IoU 0 without clipping; the others go through
    :func:`quad_intersection_area` in one vectorized pass.

    Example:
        >>> a = np.array([[0, 0, 0, 2, 2, 1, 0]])
        >>> float(bev_iou(a, a + np.array([1, 0, 0, 0, 0, 0, 0]))[0, 0])   # overlap 1 x 2 of union 6
        0.3333333333333333
    """
    a = _as_boxes(boxes_a, "bev_iou: boxes_a")
    b = _as_boxes(boxes_b, "bev_iou: boxes_b")
    iou = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return iou
    radius_a = 0.5 * np.hypot(a[:, 3], a[:, 4])
    radius_b = 0.5 * np.hypot(b[:, 3], b[:, 4])
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    i, j = np.nonzero(dist < radius_a[:, None] + radius_b[None, :])
    inter = quad_intersection_area(bev_corners(a)[i], bev_corners(b)[j])
    union = a[i, 3] * a[i, 4] + b[j, 3] * b[j, 4] - inter
    iou[i, j] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def precision_recall(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                     gt_boxes: Sequence[np.ndarray], iou_threshold: float = 0.5):
    """Precision and recall ``[D]`` after each of the ``D`` detections of all scenes ranked by score.

    A detection is a true positive when the ground-truth box of its scene that it overlaps most among
    those still unmatched has BEV IoU >= ``iou_threshold``; that box is then matched. Ties in score keep
    the scene order.

    Args:
        pred_boxes, pred_scores, gt_boxes: one entry per scene: ``[P_s, 7]``, ``[P_s]``, ``[G_s, 7]``.
    """
    if not (len(pred_boxes) == len(pred_scores) == len(gt_boxes)):
        raise ValueError(f"average_precision: pred_boxes, pred_scores and gt_boxes need one entry per scene, got "
                         f"{len(pred_boxes)}, {len(pred_scores)}, {len(gt_boxes)}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"average_precision: iou_threshold must be in (0, 1], got {iou_threshold!r}")
    preds = [_as_boxes(p, f"average_precision: pred_boxes[{s}]") for s, p in enumerate(pred_boxes)]
    gts = [_as_boxes(g, f"average_precision: gt_boxes[{s}]") for s, g in enumerate(gt_boxes)]
    scores = [np.asarray(x, dtype=np.float64).reshape(-1) for x in pred_scores]
    for s, (p, x) in enumerate(zip(preds, scores)):
        if len(p) != len(x):
            raise ValueError(f"average_precision: scene {s} has {len(p)} boxes but {len(x)} scores")
    num_gt = sum(len(g) for g in gts)
    if num_gt == 0:
        raise ValueError("average_precision: there are no ground-truth boxes; AP is undefined")
    ious = [bev_iou(p, g) for p, g in zip(preds, gts)]
    scene_of = np.concatenate([np.full(len(x), s) for s, x in enumerate(scores)]).astype(np.int64)
    row_of = np.concatenate([np.arange(len(x)) for x in scores]).astype(np.int64)
    ranking = np.argsort(-np.concatenate(scores), kind="stable")
    matched = [np.zeros(len(g), dtype=bool) for g in gts]
    tp = np.zeros(len(ranking))
    for n, k in enumerate(ranking):
        scene = scene_of[k]
        if len(gts[scene]) == 0:
            continue
        candidates = np.where(matched[scene], -1.0, ious[scene][row_of[k]])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            matched[scene][best] = True
            tp[n] = 1
    cum_tp = np.cumsum(tp)
    return cum_tp / np.arange(1, len(ranking) + 1), cum_tp / num_gt


def average_precision(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], iou_threshold: float = 0.5,
                      recall_points: int = 40) -> float:
    """BEV average precision over scenes with interpolated precision at ``recall_points`` recall positions.

    .. math::
        \\mathrm{AP} = \\frac{1}{R} \\sum_{k=1}^{R} \\max_{r \\ge k / R} p(r)

    with ``R = 40`` as KITTI's ``AP|R40`` (recall 0 left out; a recall never reached adds 0). Matching
    as :func:`precision_recall`.

    Args:
        pred_boxes, pred_scores, gt_boxes: one entry per scene: ``[P_s, 7]``, ``[P_s]``, ``[G_s, 7]``.
        iou_threshold (float): BEV IoU for a true positive (default: 0.5).
        recall_points (int): ``R`` (default: 40).

    Example:
        >>> gt = [np.array([[10, 0, 0, 4, 2, 1.5, 0.3]])]
        >>> average_precision(gt, [np.array([0.9])], gt)
        1.0
    """
    if isinstance(recall_points, bool) or not isinstance(recall_points, (int, np.integer)) or recall_points < 1:
        raise ValueError(f"average_precision: recall_points must be a positive int, got {recall_points!r}")
    precision, recall = precision_recall(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    if len(recall) == 0:                      # no detections at all
        return 0.0
    # interpolated precision: the best precision at this recall or beyond (a suffix maximum)
    best_beyond = np.maximum.accumulate(precision[::-1])[::-1]
    positions = np.arange(1, recall_points + 1) / recall_points
    first = np.searchsorted(recall, positions - 1e-12, side="left")
    reached = first < len(recall)
    return float(np.where(reached, best_beyond[np.minimum(first, len(recall) - 1)], 0.0).sum() / recall_points)
