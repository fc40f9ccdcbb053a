"""A complete single-stage 3D detector: voxels -> SECOND sparse backbone -> BEV map -> CenterPoint-style head.

Gather -> compute -> scatter runs the 3D part: the submanifold and strided sparse convolutions of
:class:`~irregconv.models.second.SECONDBackbone8x` (SECOND, Yan et al., Sensors 2018) on the voxels. The
sparse output is then densified and its remaining height folded into channels (the "height compression"
of SECOND and CenterPoint), a small 2D network (the neck) mixes the bird's-eye-view (BEV) map, and two
heads predict, per BEV cell, a class heatmap and a box regression ("Center-based 3D Object Detection and
Tracking", Yin, Zhou & Krähenbühl, arXiv:2006.11275).

Regression channels per BEV cell (:data:`REGRESSION_CHANNELS`): sub-cell centre offset ``(dx, dy)`` in
cells, centre ``z`` in metres, ``log l, log w, log h`` and the yaw as ``(sin 2θ, cos 2θ)``. A box and its
180-degree turn are the same box in BEV (and cannot be told apart from points on a box-shaped car), so
regressing ``2θ`` removes an ambiguity instead of averaging the two answers.

Decoding turns heatmap peaks into boxes with either CenterPoint's 3 x 3 max-pool suppression
(``nms="maxpool"``) or greedy rotated-box NMS on BEV IoU (``nms="rotated"``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.boxes import bev_iou
from ..data.voxelize import grid_geometry, voxelize
from ..tensor import SparseTensor
from .second import SECOND_8X_LAYERS, SECONDBackbone8x

#: regression channels per BEV cell: dx, dy, z, log l, log w, log h, sin 2θ, cos 2θ
REGRESSION_CHANNELS = 8
NMS_KINDS = ("maxpool", "rotated")
#: decoded log sizes are clamped to this many metres, so an untrained head cannot produce inf boxes
_MAX_LOG_SIZE = math.log(50.0)


def _backbone_grid(grid: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """``(Z', Y', X')`` after the strided layers of :data:`SECOND_8X_LAYERS` (conv output-size formula)."""
    shape = list(grid)
    for _stage, kind, _c_out, kernel, stride, padding, _key in SECOND_8X_LAYERS:
        if kind != "strided":
            continue
        k, s, p = (v if isinstance(v, tuple) else (v,) * 3 for v in (kernel, stride, padding))
        shape = [(n + 2 * p[a] - k[a]) // s[a] + 1 for a, n in enumerate(shape)]
    return tuple(shape)


@dataclass(frozen=True)
class DetectorConfig:
    """Geometry and widths of :class:`CenterPointDetector`; saved next to checkpoints as JSON.

    Args:
        point_range (tuple): ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres, LiDAR frame
            (x forward, y left, z up) (default: 32 m ahead, 16 m to each side, z in ``[-3, 2]``).
        voxel_size (tuple): ``(dx, dy, dz)`` in metres (default: ``(0.1, 0.1, 0.2)``); the BEV cell is
            8 voxels, so ``Y`` and ``X`` must be multiples of 8.
        num_point_features (int): point columns the voxels keep, x, y, z first (default: 4, with intensity).
        class_names (tuple): one heatmap channel per class (default: ``("Car",)``).
        neck_channels (int): width of the 2D BEV network and the heads (default: 64).
        gaussian_radius (int): radius in BEV cells of the target heatmap blobs (default: 2).
        batch_norm (bool): batch norm after the convolutions; ``False`` replaces every batch norm with
            the identity, so scenes of a batch do not interact (default: ``True``).
    """
    point_range: Tuple[float, ...] = (0.0, -16.0, -3.0, 32.0, 16.0, 2.0)
    voxel_size: Tuple[float, ...] = (0.1, 0.1, 0.2)
    num_point_features: int = 4
    class_names: Tuple[str, ...] = ("Car",)
    neck_channels: int = 64
    gaussian_radius: int = 2
    batch_norm: bool = True

    def __post_init__(self):
        owner = "DetectorConfig"
        object.__setattr__(self, "point_range", tuple(float(v) for v in self.point_range))
        object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        try:
            grid_geometry(self.voxel_size, self.point_range)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{owner}: {exc}") from None
        for name, low in (("num_point_features", 3), ("neck_channels", 1), ("gaussian_radius", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
        if not self.class_names or not all(isinstance(c, str) and c for c in self.class_names):
            raise ValueError(f"{owner}: class_names must be a non-empty tuple of names, got {self.class_names!r}")
        z, y, x = self.grid
        if y % 8 or x % 8:
            raise ValueError(f"{owner}: the BEV cell is 8 voxels, so the grid's Y and X must be multiples of 8; "
                             f"point_range {self.point_range} at voxel_size {self.voxel_size} gives Y={y}, X={x}")
        if self.bev_depth < 1:
            raise ValueError(f"{owner}: the grid has Z={z} voxels, too few for the backbone's 4 strided "
                             f"convolutions (Z >= 25 works; KITTI uses 41): raise point_range's z extent or "
                             f"lower voxel_size[2]")

    @property
    def grid(self) -> Tuple[int, int, int]:
        """Voxel grid ``(Z, Y, X)``, as :func:`~irregconv.data.voxelize` builds it."""
        x, y, z = grid_geometry(self.voxel_size, self.point_range)[2]
        return z, y, x

    @property
    def bev_depth(self) -> int:
        """``Z'``: height cells left after the backbone (folded into channels)."""
        return _backbone_grid(self.grid)[0]

    @property
    def bev_shape(self) -> Tuple[int, int]:
        """``(H, W)`` of the BEV map: ``(Y / 8, X / 8)``."""
        return _backbone_grid(self.grid)[1:]

    @property
    def bev_cell(self) -> Tuple[float, float]:
        """``(x, y)`` size of a BEV cell in metres."""
        return 8 * self.voxel_size[0], 8 * self.voxel_size[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DetectorConfig":
        """Inverse of :meth:`to_dict` (JSON lists become tuples); unknown keys raise a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"DetectorConfig.from_dict: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _conv_bn_relu(c_in: int, c_out: int) -> List[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def remove_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every batch norm inside ``module`` by ``nn.Identity`` (in place) and return ``module``."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            remove_batch_norm(child)
    return module


class CenterPointDetector(nn.Module):
    """Voxels -> class heatmap logits and box regression on the BEV grid.

    Args:
        config (DetectorConfig): geometry and widths (default: ``DetectorConfig()``).

    Shapes:
        - input: SparseTensor of voxels, ``feats [N, F]``, ``coords [N, 4]`` ``(b, z, y, x)`` on
          ``config.grid`` (:meth:`voxelize` makes it from point clouds);
        - output: heatmap logits ``[B, K, H, W]`` (``K`` classes) and regression ``[B, 8, H, W]`` on
          ``(H, W) = config.bev_shape``; row ``i``, column ``j`` is the BEV cell
          ``[x_min + j * cell_x, x_min + (j + 1) * cell_x) x [y_min + i * cell_y, ...)``.

    Example:
        >>> import numpy as np
        >>> model = CenterPointDetector()
        >>> scan = np.array([[10.0, 1.0, -1.0, 0.5], [10.1, 1.0, -1.0, 0.4]], dtype=np.float32)
        >>> heatmap, regression = model(model.voxelize([scan]))
        >>> tuple(heatmap.shape), tuple(regression.shape)
        ((1, 1, 40, 40), (1, 8, 40, 40))
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        super().__init__()
        if not isinstance(config, DetectorConfig):
            raise TypeError(f"CenterPointDetector: config must be a DetectorConfig, got {type(config).__name__}")
        self.config = config
        self.backbone = SECONDBackbone8x(config.num_point_features)
        c = config.neck_channels
        bev_in = self.backbone.out_channels * config.bev_depth
        self.neck = nn.Sequential(*_conv_bn_relu(bev_in, c), *_conv_bn_relu(c, c), *_conv_bn_relu(c, c))
        self.heatmap = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, config.num_classes, 1))
        self.regression = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(c, REGRESSION_CHANNELS, 1))
        # start every cell at a 0.1 object probability (CenterPoint's prior): the focal loss of the many
        # empty cells then does not swamp the first steps
        nn.init.constant_(self.heatmap[-1].bias, -2.19)
        if config.batch_norm:
            # OpenPCDet's momentum 0.01 suits 80 epochs; after the few hundred steps of a CPU run the running
            # statistics would still be half their initial values and eval-mode outputs wrong
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = 0.1
        else:
            remove_batch_norm(self)

    def voxelize(self, scans: Sequence) -> SparseTensor:
        """Point clouds ``[N_i, >= F]`` (ndarrays or tensors, x, y, z first) -> the voxel SparseTensor this
        detector reads, on its device: the mean of the first ``F = num_point_features`` columns per voxel."""
        count = self.config.num_point_features
        for i, scan in enumerate(scans):
            if scan.ndim != 2 or scan.shape[1] < count:
                raise ValueError(f"CenterPointDetector.voxelize: scans[{i}] has shape {tuple(scan.shape)}; the "
                                 f"detector reads {count} columns per point (num_point_features)")
        cfg = self.config
        voxels = voxelize([s[:, :count] for s in scans], cfg.voxel_size, cfg.point_range).to_sparse_tensor()
        return voxels.to(self.heatmap[-1].weight.device)

    def forward(self, voxels: SparseTensor) -> Tuple[Tensor, Tensor]:
        if not isinstance(voxels, SparseTensor):
            raise TypeError(f"CenterPointDetector: input must be an irregconv.SparseTensor of voxels, got "
                            f"{type(voxels).__name__}; use model.voxelize(scans)")
        if tuple(voxels.spatial_shape) != self.config.grid:
            raise ValueError(f"CenterPointDetector: voxels are on grid {tuple(voxels.spatial_shape)}, the detector "
                             f"on {self.config.grid}; voxelize with the config's voxel_size and point_range")
        features = self.backbone(voxels).dense()                  # [B, C, Z', H, W]
        bev = self.neck(features.flatten(1, 2))                   # height compression: Z' folded into channels
        return self.heatmap(bev), self.regression(bev)


class DetectionTargets(NamedTuple):
    """Training targets on the BEV grid (see :func:`build_targets`)."""
    heatmap: Tensor      #: ``[B, K, H, W]`` gaussian blobs, exactly 1 at object centres
    regression: Tensor   #: ``[B, 8, H, W]`` box encoding at centre cells, 0 elsewhere
    mask: Tensor         #: ``[B, H, W]`` bool, True at centre cells
    num_objects: int     #: centre cells (objects sharing a cell count once)


def _check_boxes(boxes, owner: str, name: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 7)
    if array.ndim != 2 or array.shape[1] != 7:
        raise ValueError(f"{owner}: {name} must be [M, 7] boxes (x, y, z, l, w, h, yaw), got shape {array.shape}")
    if (array[:, 3:6] <= 0).any():
        raise ValueError(f"{owner}: {name} has a box with a non-positive size (l, w, h); sizes must be > 0")
    return array


def build_targets(config: DetectorConfig, boxes: Sequence[np.ndarray],
                  labels: Optional[Sequence[np.ndarray]] = None) -> DetectionTargets:
    """Gaussian heatmaps and regression targets at the BEV cells holding object centres.

    Each object puts ``exp(-d^2 / (2 sigma^2))`` (``d`` in cells, ``sigma = (2 r + 1) / 6``, ``r`` the
    config's ``gaussian_radius``) around its centre cell into its class channel, keeping the maximum where
    blobs meet; objects whose centre lies outside the BEV range are skipped.

    Args:
        config (DetectorConfig): the detector's geometry.
        boxes: per scene, ``[M_b, 7]`` boxes ``(x, y, z, l, w, h, yaw)``.
        labels: per scene, ``[M_b]`` class indices into ``config.class_names`` (default: all 0).

    Returns:
        DetectionTargets: heatmap ``[B, K, H, W]``, regression ``[B, 8, H, W]``, mask ``[B, H, W]`` and
        the number of centre cells.
    """
    owner = "build_targets"
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{owner}: labels has {len(labels)} scenes but boxes has {len(boxes)}")
    h, w = config.bev_shape
    (cell_x, cell_y), lo = config.bev_cell, config.point_range
    r = config.gaussian_radius
    sigma = (2 * r + 1) / 6
    heat = torch.zeros(len(boxes), config.num_classes, h, w)
    reg = torch.zeros(len(boxes), REGRESSION_CHANNELS, h, w)
    mask = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    blob = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    for b, scene_boxes in enumerate(boxes):
        scene_boxes = _check_boxes(scene_boxes, owner, f"boxes[{b}]")
        scene_labels = np.zeros(len(scene_boxes), np.int64) if labels is None else np.asarray(labels[b]).reshape(-1)
        if len(scene_labels) != len(scene_boxes) or (len(scene_labels) and (
                scene_labels.min() < 0 or scene_labels.max() >= config.num_classes)):
            raise ValueError(f"{owner}: labels[{b}] must hold {len(scene_boxes)} class indices in "
                             f"[0, {config.num_classes}), got {scene_labels.tolist()}")
        for (x, y, z, bl, bw, bh, yaw), k in zip(scene_boxes, scene_labels):
            cx, cy = (x - lo[0]) / cell_x, (y - lo[1]) / cell_y
            ix, iy = math.floor(cx), math.floor(cy)
            if not (0 <= ix < w and 0 <= iy < h):
                continue
            y0, y1, x0, x1 = max(iy - r, 0), min(iy + r + 1, h), max(ix - r, 0), min(ix + r + 1, w)
            window = heat[b, k, y0:y1, x0:x1]
            torch.maximum(window, blob[y0 - iy + r:y1 - iy + r, x0 - ix + r:x1 - ix + r], out=window)
            reg[b, :, iy, ix] = torch.tensor([cx - ix, cy - iy, z, math.log(bl), math.log(bw), math.log(bh),
                                              math.sin(2 * yaw), math.cos(2 * yaw)])
            mask[b, iy, ix] = True
    return DetectionTargets(heat, reg, mask, int(mask.sum()))


def detection_loss(heatmap_logits: Tensor, regression: Tensor, targets: DetectionTargets,
                   normaliser: Optional[float] = None,
                   regression_weight: float = 2.0) -> Tuple[Tensor, Dict[str, float]]:
    """CenterNet's focal loss on the heatmap plus L1 on the regression at centre cells.

    .. math::
        L = \\frac{1}{N} \\Big( -\\sum_{y=1} (1 - p)^2 \\log p
            - \\sum_{y<1} (1 - y)^4 p^2 \\log(1 - p) + \\lambda \\sum_{\\text{centres}} |r - \\hat r|_1 \\Big)

    (focal exponents 2 and 4 of "Objects as Points", arXiv:1904.07850), ``p = sigmoid(logit)``.

    Args:
        heatmap_logits (Tensor): ``[B, K, H, W]``.
        regression (Tensor): ``[B, 8, H, W]``.
        targets (DetectionTargets): from :func:`build_targets`.
        normaliser (float, optional): ``N``; default the batch's ``targets.num_objects`` (at least 1).
            Data-parallel training passes the number of objects over all processes, so that the sum of
            the processes' losses is the loss of the whole batch.
        regression_weight (float): ``λ`` (default: 2.0).

    Returns:
        (Tensor, dict): the scalar loss and its ``"heatmap"`` and ``"regression"`` parts as floats.
    """
    if heatmap_logits.shape != targets.heatmap.shape or regression.shape != targets.regression.shape:
        raise ValueError(f"detection_loss: predictions {list(heatmap_logits.shape)}, {list(regression.shape)} do "
                         f"not match targets {list(targets.heatmap.shape)}, {list(targets.regression.shape)}")
    heat = targets.heatmap.to(heatmap_logits.device)
    mask = targets.mask.to(heatmap_logits.device)
    normaliser = float(max(targets.num_objects, 1) if normaliser is None else normaliser)
    log_p, log_not_p = F.logsigmoid(heatmap_logits), F.logsigmoid(-heatmap_logits)
    p = log_p.exp()
    positive = heat.eq(1)
    focal = -torch.where(positive, (1 - p) ** 2 * log_p, (1 - heat) ** 4 * p ** 2 * log_not_p).sum() / normaliser
    picked = regression.permute(0, 2, 3, 1)[mask]
    wanted = targets.regression.to(regression.device).permute(0, 2, 3, 1)[mask]
    l1 = F.l1_loss(picked, wanted, reduction="sum") / normaliser
    return focal + regression_weight * l1, {"heatmap": float(focal.detach()), "regression": float(l1.detach())}


class Detections(NamedTuple):
    """Decoded detections of one scene."""
    boxes: np.ndarray    #: ``[P, 7]`` float64 ``(x, y, z, l, w, h, yaw)``, yaw in ``(-pi/2, pi/2]``
    scores: np.ndarray   #: ``[P]`` float64, descending
    labels: np.ndarray   #: ``[P]`` int64 class indices


def rotated_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on rotated BEV IoU.

    Boxes are visited by descending score (ties in input order); a box is kept unless it overlaps an
    already kept box with IoU > ``iou_threshold``.

    Args:
        boxes (ndarray): ``[P, 7]``.
        scores (ndarray): ``[P]``.
        iou_threshold (float): in ``[0, 1]``.

    Returns:
        ndarray: int64 indices of the kept boxes, by descending score.
    """
    boxes = _check_boxes(boxes, "rotated_nms", "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"rotated_nms: {len(boxes)} boxes but {len(scores)} scores")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"rotated_nms: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    order = np.argsort(-scores, kind="stable")
    iou = bev_iou(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(order[i])
            suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


@torch.no_grad()
def decode(config: DetectorConfig, heatmap_logits: Tensor, regression: Tensor, score_threshold: float = 0.1,
           max_objects: int = 100, nms: str = "maxpool", nms_iou: float = 0.1) -> List[Detections]:
    """Heatmap peaks -> boxes, per scene.

    ``nms="maxpool"`` keeps the cells that are the maximum of their 3 x 3 neighbourhood in their class
    channel (CenterPoint); ``nms="rotated"`` decodes every cell above the threshold and runs
    :func:`rotated_nms` per class at ``nms_iou``. Either way the ``max_objects`` best candidates above
    ``score_threshold`` are considered.

    Args:
        config (DetectorConfig): the detector's geometry.
        heatmap_logits (Tensor): ``[B, K, H, W]``.
        regression (Tensor): ``[B, 8, H, W]``.
        score_threshold (float): minimum sigmoid score (default: 0.1).
        max_objects (int): candidates per scene (default: 100).
        nms (str): ``"maxpool"`` or ``"rotated"`` (default: ``"maxpool"``).
        nms_iou (float): IoU above which ``"rotated"`` suppresses a box (default: 0.1).

    Returns:
        list of Detections: boxes ``[P, 7]``, scores ``[P]`` (descending), labels ``[P]``.
    """
    if nms not in NMS_KINDS:
        raise ValueError(f"decode: nms must be one of {NMS_KINDS}, got {nms!r}")
    if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"decode: max_objects must be a positive int, got {max_objects!r}")
    b, k, h, w = heatmap_logits.shape
    if (k, h, w) != (config.num_classes, *config.bev_shape) or regression.shape != (b, REGRESSION_CHANNELS, h, w):
        raise ValueError(f"decode: expected heatmap [B, {config.num_classes}, {config.bev_shape[0]}, "
                         f"{config.bev_shape[1]}] and regression [B, 8, H, W], got {list(heatmap_logits.shape)} and "
                         f"{list(regression.shape)}")
    (cell_x, cell_y), lo = config.bev_cell, config.point_range
    scores = heatmap_logits.sigmoid()
    if nms == "maxpool":
        scores = torch.where(scores == F.max_pool2d(scores, 3, stride=1, padding=1), scores, torch.zeros_like(scores))
    results = []
    for scene in range(b):
        top = torch.topk(scores[scene].flatten(), min(max_objects, scores[scene].numel()))
        keep = top.values > score_threshold
        index = top.indices[keep]
        label, cell = index // (h * w), index % (h * w)
        iy, ix = cell // w, cell % w
        r = regression[scene][:, iy, ix].t().double()
        size = r[:, 3:6].clamp(max=_MAX_LOG_SIZE).exp()
        boxes = torch.cat([torch.stack([lo[0] + (ix + r[:, 0]) * cell_x, lo[1] + (iy + r[:, 1]) * cell_y, r[:, 2]], 1),
                           size, (0.5 * torch.atan2(r[:, 6], r[:, 7])).unsqueeze(1)], dim=1).cpu().numpy()
        found = Detections(boxes, top.values[keep].double().cpu().numpy(), label.cpu().numpy().astype(np.int64))
        if nms == "rotated":
            kept = np.concatenate([np.nonzero(found.labels == c)[0][rotated_nms(found.boxes[found.labels == c],
                                                                                 found.scores[found.labels == c],
                                                                                 nms_iou)]
                                   for c in range(k)])
            kept = kept[np.argsort(-found.scores[kept], kind="stable")]
            found = Detections(found.boxes[kept], found.scores[kept], found.labels[kept])
        results.append(found)
    return results
