"""A complete single-stage 3D detector: voxels -> sparse backbone -> BEV map -> CenterPoint-style head.

Gather -> compute -> scatter runs the 3D part: submanifold and strided sparse convolutions on the voxels
(SECOND, arXiv:1810.01590 / Sensors 2018); the sparse features are then densified and their height folded
into channels (the "height compression" of SECOND/CenterPoint) and a small 2D network predicts a class
heatmap and box regressions per bird's-eye-view cell (CenterPoint, Yin et al., arXiv:2006.11275).

Regression per BEV cell: sub-cell centre offset (2), centre z (1), log size l, w, h (3) and the yaw as
``(sin 2θ, cos 2θ)`` (2): a box and its 180-degree turn are the same box in BEV, so regressing 2θ removes an
ambiguity that LiDAR points cannot resolve.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.voxelize import voxelize
from ..nn.sparse import SparseConv3d, SparseSequential, SubMConv3d
from ..tensor import SparseTensor

REGRESSION_CHANNELS = 8


@dataclass
class DetectorConfig:
    """Geometry and widths of :class:`CenterPointDetector` (saved next to checkpoints as JSON)."""
    point_range: Tuple[float, ...] = (0.0, -20.0, -3.0, 40.0, 20.0, 1.0)
    voxel_size: Tuple[float, ...] = (0.2, 0.2, 0.2)
    num_point_features: int = 4
    channels: Tuple[int, ...] = (16, 32, 64)
    bev_channels: int = 96
    out_stride: int = 4
    num_classes: int = 1
    class_names: Tuple[str, ...] = ("Car",)
    gaussian_radius: int = 2

    @property
    def grid(self) -> Tuple[int, int, int]:
        """``(Z, Y, X)`` voxel grid."""
        lo, hi, size = self.point_range[:3], self.point_range[3:], self.voxel_size
        x, y, z = (int(round((hi[a] - lo[a]) / size[a])) for a in range(3))
        return z, y, x

    @property
    def bev_cell(self) -> float:
        return self.voxel_size[0] * self.out_stride

    @property
    def bev_shape(self) -> Tuple[int, int]:
        _, y, x = self.grid
        return y // self.out_stride, x // self.out_stride

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DetectorConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _block(kind, c_in, c_out, **kw):
    conv = SubMConv3d(c_in, c_out, 3, bias=False) if kind == "subm" else SparseConv3d(c_in, c_out, bias=False, **kw)
    return [conv, nn.BatchNorm1d(c_out), nn.ReLU()]


def sparse_backbone_3d(in_channels: int, channels: Sequence[int] = (16, 32, 64)) -> SparseSequential:
    """SECOND-style sparse encoder, 4x in y/x: SubM, then two (strided conv + SubM) stages, then a
    height-only strided conv. Input ``[N, C_in]`` voxels on ``(Z, Y, X)``; output on ``(Z', Y/4, X/4)``."""
    c0, c1, c2 = channels
    layers = _block("subm", in_channels, c0)
    layers += _block("conv", c0, c1, kernel_size=3, stride=2, padding=1) + _block("subm", c1, c1)
    layers += _block("conv", c1, c2, kernel_size=3, stride=2, padding=1) + _block("subm", c2, c2)
    layers += _block("conv", c2, c2, kernel_size=(3, 1, 1), stride=(2, 1, 1))
    return SparseSequential(*layers)


class CenterPointDetector(nn.Module):
    """Voxels -> heatmap ``[B, K, H, W]`` (logits) and regression ``[B, 8, H, W]``.

    Args:
        config (DetectorConfig): geometry and widths.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        super().__init__()
        self.config = config
        self.backbone = sparse_backbone_3d(config.num_point_features, config.channels)
        z = config.grid[0]
        for _ in range(2):
            z = (z + 2 - 3) // 2 + 1
        z = (z - 3) // 2 + 1
        bev_in = config.channels[2] * z
        c = config.bev_channels
        self.neck = nn.Sequential(
            nn.Conv2d(bev_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.heatmap = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, config.num_classes, 1))
        self.regression = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(c, REGRESSION_CHANNELS, 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)  # prior 0.1, as CenterPoint

    def voxelize(self, scans: List[np.ndarray]) -> SparseTensor:
        """Scans ``[N_i, F]`` -> the voxel SparseTensor this detector reads."""
        cfg = self.config
        return voxelize([s[:, :cfg.num_point_features] for s in scans], cfg.voxel_size, cfg.point_range).to_sparse_tensor()

    def forward(self, voxels: SparseTensor) -> Tuple[Tensor, Tensor]:
        features = self.backbone(voxels).dense()                     # [B, C, Z', Y', X']
        bev = features.flatten(1, 2)                                 # height compression
        bev = self.neck(bev)
        return self.heatmap(bev), self.regression(bev)


def build_targets(config: DetectorConfig, boxes: Sequence[np.ndarray]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussian heatmaps and regression targets at object centres.

    Returns:
        heatmap ``[B, K, H, W]``, regression ``[B, 8, H, W]``, mask ``[B, H, W]`` (True at centres),
        and the number of objects.
    """
    h, w = config.bev_shape
    cell, lo = config.bev_cell, config.point_range
    r = config.gaussian_radius
    sigma = (2 * r + 1) / 6
    heat = torch.zeros(len(boxes), config.num_classes, h, w)
    reg = torch.zeros(len(boxes), REGRESSION_CHANNELS, h, w)
    mask = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    blob = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    count = 0
    for b, scene_boxes in enumerate(boxes):
        for x, y, z, bl, bw, bh, yaw in np.asarray(scene_boxes, dtype=np.float64).reshape(-1, 7):
            cx, cy = (x - lo[0]) / cell, (y - lo[1]) / cell
            ix, iy = int(math.floor(cx)), int(math.floor(cy))
            if not (0 <= ix < w and 0 <= iy < h):
                continue
            y0, y1, x0, x1 = max(iy - r, 0), min(iy + r + 1, h), max(ix - r, 0), min(ix + r + 1, w)
            patch = blob[y0 - iy + r:y1 - iy + r, x0 - ix + r:x1 - ix + r]
            heat[b, 0, y0:y1, x0:x1] = torch.maximum(heat[b, 0, y0:y1, x0:x1], patch)
            reg[b, :, iy, ix] = torch.tensor([cx - ix, cy - iy, z, math.log(bl), math.log(bw), math.log(bh),
                                              math.sin(2 * yaw), math.cos(2 * yaw)])
            mask[b, iy, ix] = True
            count += 1
    return heat, reg, mask, count


def detection_loss(heatmap_logits: Tensor, regression: Tensor, targets) -> Tuple[Tensor, dict]:
    """CenterNet focal loss on the heatmap (alpha 2, beta 4) plus L1 on the regression at centres."""
    heat, reg, mask, count = targets
    p = heatmap_logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = heat.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * positive).sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - positive)).sum()
    normaliser = max(count, 1)
    focal = (pos_loss + neg_loss) / normaliser
    picked = regression.permute(0, 2, 3, 1)[mask]
    wanted = reg.permute(0, 2, 3, 1)[mask]
    l1 = F.l1_loss(picked, wanted, reduction="sum") / normaliser if count else regression.sum() * 0
    return focal + 2.0 * l1, {"heatmap": focal.item(), "regression": l1.item()}


@torch.no_grad()
def decode(config: DetectorConfig, heatmap_logits: Tensor, regression: Tensor, score_threshold: float = 0.1,
           max_objects: int = 50) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Peaks of the heatmap (3x3 max-pool suppression) -> per scene ``(boxes [P, 7], scores [P])``."""
    cell, lo = config.bev_cell, config.point_range
    scores = heatmap_logits.sigmoid()[:, 0]
    peaks = scores == F.max_pool2d(scores.unsqueeze(1), 3, stride=1, padding=1).squeeze(1)
    results = []
    for b in range(scores.size(0)):
        s = torch.where(peaks[b], scores[b], torch.zeros_like(scores[b])).flatten()
        top = torch.topk(s, min(max_objects, s.numel()))
        keep = top.values > score_threshold
        idx = top.indices[keep]
        iy, ix = idx // scores.size(2), idx % scores.size(2)
        r = regression[b][:, iy, ix].t()
        x = lo[0] + (ix + r[:, 0]) * cell
        y = lo[1] + (iy + r[:, 1]) * cell
        yaw = 0.5 * torch.atan2(r[:, 6], r[:, 7])
        boxes = torch.stack([x, y, r[:, 2], r[:, 3].exp(), r[:, 4].exp(), r[:, 5].exp(), yaw], dim=1)
        results.append((boxes.double().numpy(), top.values[keep].double().numpy()))
    return results
