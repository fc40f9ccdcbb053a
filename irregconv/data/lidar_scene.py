"""Seeded synthetic LiDAR scenes with labelled 3D boxes (the demo's embedded data; no files needed).

A 64-beam spinning LiDAR 1.73 m above a ground plane (KITTI's mounting) casts rays at elevations from
+2 to -24.8 degrees. Rays hit the ground, cars (boxes with random yaw), pedestrians (upright cylinders),
poles and building walls (clutter); the first hit along each ray wins (occlusion). Ranges get Gaussian
noise, returns are dropped with a probability growing with range, and intensity depends on the surface
and falls with range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

SENSOR_HEIGHT = 1.73
CLASSES = ("Car", "Pedestrian")


@dataclass
class SceneConfig:
    """Scene layout: object counts and where they go, sensor resolution.

    Attributes:
        x_range, y_range: area where objects are placed (metres, LiDAR frame: x forward, y left).
        azimuth_fov: horizontal field of view in degrees, centred on +x.
        azimuth_step: horizontal resolution in degrees.
    """
    num_cars: Tuple[int, int] = (4, 10)
    num_pedestrians: Tuple[int, int] = (2, 6)
    num_poles: Tuple[int, int] = (3, 8)
    x_range: Tuple[float, float] = (3.0, 38.0)
    y_range: Tuple[float, float] = (-18.0, 18.0)
    azimuth_fov: float = 180.0
    azimuth_step: float = 0.3
    num_beams: int = 64
    max_range: float = 80.0
    range_noise: float = 0.02


@dataclass
class Scene:
    """One scene.

    Attributes:
        points: ``[N, 4]`` float32 ``(x, y, z, intensity)``.
        boxes: ``[M, 7]`` float32 ``(x, y, z, l, w, h, yaw)``, z at the box centre.
        labels: ``[M]`` int64 index into :data:`CLASSES`.
        num_points_in_box: ``[M]`` LiDAR points that hit each object.
    """
    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    num_points_in_box: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _ray_boxes(origin, dirs, boxes):
    """Distance along each ray to each box (slab test in the box frame); inf when missed. ``[R, M]``."""
    if len(boxes) == 0:
        return np.full((len(dirs), 0), np.inf, dtype=np.float32)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = origin[None, :] - boxes[:, :3]                                   # [M, 3]
    o = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1)
    d = np.stack([dirs[:, None, 0] * c + dirs[:, None, 1] * s,
                  -dirs[:, None, 0] * s + dirs[:, None, 1] * c,
                  np.broadcast_to(dirs[:, None, 2], (len(dirs), len(boxes)))], 2)   # [R, M, 3]
    half = boxes[:, 3:6] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    near = np.nanmax(np.minimum(t1, t2), axis=2)
    far = np.nanmin(np.maximum(t1, t2), axis=2)
    hit = (near <= far) & (near > 0)
    return np.where(hit, near, np.inf)


def _ray_cylinders(origin, dirs, cylinders):
    """Distance to upright cylinders ``[M, 5]`` (x, y, z_bottom, radius, height); inf when missed."""
    if len(cylinders) == 0:
        return np.full((len(dirs), 0), np.inf, dtype=np.float32)
    ox = origin[0] - cylinders[:, 0]
    oy = origin[1] - cylinders[:, 1]
    dx, dy = dirs[:, None, 0], dirs[:, None, 1]
    a = dx ** 2 + dy ** 2
    b = 2 * (ox * dx + oy * dy)
    cc = ox ** 2 + oy ** 2 - cylinders[:, 3] ** 2
    disc = b ** 2 - 4 * a * cc
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    z = origin[2] + t * dirs[:, None, 2]
    hit = (disc >= 0) & (t > 0) & (z >= cylinders[:, 2]) & (z <= cylinders[:, 2] + cylinders[:, 4])
    return np.where(hit, t, np.inf)


def _place(rng, count, radius, placed, config, min_gap=1.0):
    """Sample ``count`` non-overlapping (x, y) positions (circles of ``radius``)."""
    out = []
    for _ in range(count * 30):
        if len(out) == count:
            break
        x = rng.uniform(*config.x_range)
        y = rng.uniform(*config.y_range)
        if all((x - px) ** 2 + (y - py) ** 2 > (radius + pr + min_gap) ** 2 for px, py, pr in placed):
            placed.append((x, y, radius))
            out.append((x, y))
    return out


def generate_scene(seed: int = 0, config: SceneConfig = SceneConfig()) -> Scene:
    """A seeded synthetic scene; the same seed gives the same bits.

    Example:
        >>> scene = generate_scene(seed=0)
        >>> scene.points.shape[1], scene.boxes.shape[1]
        (4, 7)
    """
    rng = np.random.default_rng(seed)
    ground = -SENSOR_HEIGHT
    placed: List[tuple] = []
    cars = []
    for x, y in _place(rng, int(rng.integers(*config.num_cars, endpoint=True)), 2.6, placed, config):
        l, w, h = rng.normal(4.4, 0.3), rng.normal(1.85, 0.1), rng.normal(1.6, 0.12)
        cars.append((x, y, ground + h / 2, l, w, h, rng.uniform(-np.pi, np.pi)))
    peds = []
    for x, y in _place(rng, int(rng.integers(*config.num_pedestrians, endpoint=True)), 0.4, placed, config):
        peds.append((x, y, ground, rng.uniform(0.25, 0.35), rng.uniform(1.55, 1.9)))
    poles = [(x, y, ground, 0.12, rng.uniform(3.0, 6.0))
             for x, y in _place(rng, int(rng.integers(*config.num_poles, endpoint=True)), 0.2, placed, config)]
    walls = []
    for side in (-1, 1):  # building fronts beyond the placement area on both sides
        for k in range(int(rng.integers(1, 4))):
            length = rng.uniform(8, 20)
            walls.append((rng.uniform(5, 60), side * rng.uniform(22, 30), ground + 4, length,
                          rng.uniform(1, 3), 8.0, rng.normal(0, 0.08)))
    car_boxes = np.asarray(cars, dtype=np.float64).reshape(-1, 7)
    wall_boxes = np.asarray(walls, dtype=np.float64).reshape(-1, 7)
    cylinders = np.asarray(peds + poles, dtype=np.float64).reshape(-1, 5)

    elevation = np.deg2rad(np.linspace(2.0, -24.8, config.num_beams))
    half_fov = config.azimuth_fov / 2
    azimuth = np.deg2rad(np.arange(-half_fov, half_fov, config.azimuth_step)) + \
        np.deg2rad(rng.uniform(0, config.azimuth_step))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    origin = np.zeros(3)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < 0, ground / dirs[:, 2], np.inf)[:, None]
    hits = np.concatenate([t_ground, _ray_boxes(origin, dirs, car_boxes), _ray_boxes(origin, dirs, wall_boxes),
                           _ray_cylinders(origin, dirs, cylinders)], axis=1)
    which = np.argmin(hits, axis=1)
    t = hits[np.arange(len(dirs)), which]
    keep = np.isfinite(t) & (t < config.max_range)
    keep &= rng.random(len(t)) > 0.02 + 0.25 * np.clip(t / config.max_range, 0, 1) ** 2   # range fall-off
    t_noisy = t[keep] + rng.normal(0, config.range_noise, keep.sum())
    xyz = dirs[keep] * t_noisy[:, None]
    surface = which[keep]
    num_cars, num_walls = len(car_boxes), len(wall_boxes)
    base = np.select([surface == 0, surface <= num_cars, surface <= num_cars + num_walls],
                     [0.25, 0.6, 0.35], default=0.45)
    intensity = np.clip(base * np.exp(-t_noisy / 60) + rng.normal(0, 0.05, len(base)), 0, 1)
    points = np.concatenate([xyz, intensity[:, None]], axis=1).astype(np.float32)

    num_peds = len(peds)
    counts = np.bincount(surface, minlength=hits.shape[1])
    boxes = np.concatenate([car_boxes, np.asarray([(x, y, z + h / 2, 2 * r, 2 * r, h, 0.0)
                                                   for x, y, z, r, h in peds]).reshape(-1, 7)]).astype(np.float32)
    labels = np.concatenate([np.zeros(num_cars, dtype=np.int64), np.ones(num_peds, dtype=np.int64)])
    in_box = np.concatenate([counts[1:1 + num_cars], counts[1 + num_cars + num_walls:1 + num_cars + num_walls + num_peds]])
    return Scene(points=points, boxes=boxes, labels=labels, num_points_in_box=in_box.astype(np.int64))
