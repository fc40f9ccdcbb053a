"""Box geometry for evaluation: rotated bird's-eye-view IoU and average precision."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """``[M, 7]`` boxes (x, y, z, l, w, h, yaw) -> ``[M, 4, 2]`` BEV corners, counter-clockwise."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    dx = local[None, :, 0] * boxes[:, None, 3]
    dy = local[None, :, 1] * boxes[:, None, 4]
    x = boxes[:, None, 0] + dx * c[:, None] - dy * s[:, None]
    y = boxes[:, None, 1] + dx * s[:, None] + dy * c[:, None]
    return np.stack([x, y], axis=-1)


def _clip(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon ``subject`` inside convex ``clipper`` (both CCW)."""
    output = subject
    for i in range(len(clipper)):
        if len(output) == 0:
            break
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        edge = b - a
        side = edge[0] * (output[:, 1] - a[1]) - edge[1] * (output[:, 0] - a[0])
        result = []
        for j in range(len(output)):
            p, q = output[j], output[(j + 1) % len(output)]
            sp, sq = side[j], side[(j + 1) % len(output)]
            if sp >= 0:
                result.append(p)
            if (sp >= 0) != (sq >= 0):
                result.append(p + (q - p) * (sp / (sp - sq)))
        output = np.asarray(result).reshape(-1, 2)
    return output


def _area(polygon: np.ndarray) -> float:
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def bev_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Rotated BEV IoU matrix ``[M_a, M_b]`` of boxes (x, y, z, l, w, h, yaw).

    Pairs whose circumscribed circles do not meet are skipped (IoU 0) before polygon clipping.
    """
    a, b = np.asarray(boxes_a, np.float64).reshape(-1, 7), np.asarray(boxes_b, np.float64).reshape(-1, 7)
    iou = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return iou
    ca, cb = bev_corners(a), bev_corners(b)
    ra = 0.5 * np.hypot(a[:, 3], a[:, 4])
    rb = 0.5 * np.hypot(b[:, 3], b[:, 4])
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    for i, j in zip(*np.nonzero(dist < ra[:, None] + rb[None, :])):
        inter = _area(_clip(ca[i], cb[j]))
        iou[i, j] = inter / (area_a[i] + area_b[j] - inter)
    return iou


def average_precision(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], iou_threshold: float = 0.5,
                      recall_points: int = 40) -> float:
    """BEV average precision over scenes (KITTI's 40 recall positions, interpolated precision).

    Detections of all scenes are ranked by score; a detection is a true positive when its best
    still-unmatched ground-truth box in the same scene has IoU >= ``iou_threshold``.

    Args:
        pred_boxes, pred_scores, gt_boxes: one array per scene: ``[P_s, 7]``, ``[P_s]``, ``[G_s, 7]``.
    """
    if not (len(pred_boxes) == len(pred_scores) == len(gt_boxes)):
        raise ValueError(f"average_precision: pred_boxes, pred_scores and gt_boxes need one entry per scene, got "
                         f"{len(pred_boxes)}, {len(pred_scores)}, {len(gt_boxes)}")
    num_gt = sum(len(np.asarray(g).reshape(-1, 7)) for g in gt_boxes)
    if num_gt == 0:
        raise ValueError("average_precision: there are no ground-truth boxes; AP is undefined")
    records = []
    for scene, (boxes, scores, gts) in enumerate(zip(pred_boxes, pred_scores, gt_boxes)):
        iou = bev_iou(boxes, gts)
        for k in range(len(np.asarray(scores).reshape(-1))):
            records.append((float(np.asarray(scores).reshape(-1)[k]), scene, k, iou[k] if iou.size else np.zeros(0)))
    records.sort(key=lambda r: -r[0])
    matched = [np.zeros(len(np.asarray(g).reshape(-1, 7)), dtype=bool) for g in gt_boxes]
    tp = np.zeros(len(records))
    for n, (_, scene, _, ious) in enumerate(records):
        if ious.size == 0:
            continue
        candidates = np.where(matched[scene], -1.0, ious)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            matched[scene][best] = True
            tp[n] = 1
    cum_tp = np.cumsum(tp)
    recall = cum_tp / num_gt
    precision = cum_tp / np.arange(1, len(records) + 1)
    ap = 0.0
    for r in np.linspace(1.0 / recall_points, 1.0, recall_points):
        above = precision[recall >= r - 1e-12]
        ap += above.max() if above.size else 0.0
    return ap / recall_points
