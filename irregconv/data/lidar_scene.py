"""Seeded synthetic LiDAR scenes with labelled 3D boxes (the demo's embedded data; no files needed).

A 64-beam spinning LiDAR 1.73 m above a flat ground (KITTI's Velodyne HDL-64E mounting) casts one ray
per (beam, azimuth step). The beams follow the HDL-64E layout: an upper block of 32 lasers from +2.0 to
-8.33 degrees (1/3 degree apart) and a lower block of 32 from -8.83 to -24.8 degrees (about 1/2 degree
apart); the default azimuth step, 0.17 degrees, is the HDL-64E's at KITTI's 10 Hz spin. Rays hit the
ground, cars (boxes with random yaw), pedestrians (upright cylinders, with a top cap), poles and
building fronts (clutter); the first hit along each ray wins, so near objects occlude far ones.
Ranges get Gaussian noise; returns drop out more often with range and at grazing incidence; intensity
is the surface reflectivity scaled by the cosine of the incidence angle and a range fall-off.

Ray casting is vectorized over (ray, object) pairs: each object only meets the rays inside its
azimuth and elevation extent as seen from the sensor, which keeps a scene at a few tens of ms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

SENSOR_HEIGHT = 1.73
CLASSES = ("Car", "Pedestrian")
#: HDL-64E beam elevations in degrees, top to bottom
HDL64_ELEVATIONS = tuple(np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.8, 32)]).round(4))

# surface kinds; reflectivities are drawn per object around these
_GROUND, _CAR, _BUILDING, _PEDESTRIAN, _POLE = range(5)
_REFLECTIVITY = {_GROUND: 0.25, _CAR: 0.55, _BUILDING: 0.35, _PEDESTRIAN: 0.45, _POLE: 0.6}


@dataclass(frozen=True)
class SceneConfig:
    """Scene layout and sensor model.

    Attributes:
        num_cars, num_pedestrians, num_poles: inclusive ranges of object counts.
        num_buildings: inclusive range of building fronts on each side of the road.
        x_range, y_range: area where cars, pedestrians and poles are placed (metres, LiDAR frame:
            x forward, y left); the default lies inside the KITTI detection range
            ``[0, -40, -3, 70.4, 40, 1]``.
        car_size: mean (l, w, h) of cars in metres (standard deviations 0.3, 0.1, 0.1).
        elevations: beam elevations in degrees (default: the HDL-64E's 64, :data:`HDL64_ELEVATIONS`).
        azimuth_fov: horizontal field of view in degrees centred on +x; 360 for a full sweep.
        azimuth_step: horizontal resolution in degrees.
        max_range: no returns beyond this distance (metres).
        range_noise: standard deviation of the range error (metres).
        dropout: probability of a missing return at close range; it grows quadratically to
            ``dropout + 0.25`` at ``max_range`` and by up to 0.3 at grazing incidence.
    """
    num_cars: Tuple[int, int] = (4, 10)
    num_pedestrians: Tuple[int, int] = (2, 6)
    num_poles: Tuple[int, int] = (3, 8)
    num_buildings: Tuple[int, int] = (1, 3)
    x_range: Tuple[float, float] = (3.0, 38.0)
    y_range: Tuple[float, float] = (-18.0, 18.0)
    car_size: Tuple[float, float, float] = (4.5, 1.9, 1.6)
    elevations: Tuple[float, ...] = HDL64_ELEVATIONS
    azimuth_fov: float = 180.0
    azimuth_step: float = 0.17
    max_range: float = 80.0
    range_noise: float = 0.02
    dropout: float = 0.02


@dataclass
class Scene:
    """One synthetic scene.

    Attributes:
        points: ``[N, 4]`` float32 ``(x, y, z, intensity)``, intensity in [0, 1].
        boxes: ``[M, 7]`` float32 ``(x, y, z, l, w, h, yaw)``, z at the box centre; pedestrians are the
            boxes around their cylinders (``l = w = 2 r``, yaw 0).
        labels: ``[M]`` int64 index into :data:`CLASSES`.
        num_points_in_box: ``[M]`` int64 returns from each labelled object (after occlusion and dropout).
    """
    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    num_points_in_box: np.ndarray


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _box_footprint(boxes: np.ndarray) -> np.ndarray:
    """``[M, 4, 2]`` BEV corners of ``[M, 7]`` boxes."""
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    dx, dy = local[None, :, 0] * boxes[:, None, 3], local[None, :, 1] * boxes[:, None, 4]
    return np.stack([boxes[:, None, 0] + dx * c[:, None] - dy * s[:, None],
                     boxes[:, None, 1] + dx * s[:, None] + dy * c[:, None]], axis=-1)


class _Rays:
    """The sensor's ray grid ``[E, A]`` (beam, azimuth step) and the (ray, object) pairs to test."""

    def __init__(self, elevations_deg, azimuth_fov: float, azimuth_step: float, phase: float):
        self.elevation = np.deg2rad(np.asarray(elevations_deg, dtype=np.float64))
        self.full = azimuth_fov >= 360.0
        if self.full:   # a whole number of steps around the circle, so indices wrap cleanly
            self.num_azimuth = int(round(360.0 / azimuth_step))
            self.step = 2 * np.pi / self.num_azimuth
            self.start = -np.pi + phase * self.step
        else:
            self.num_azimuth = int(round(azimuth_fov / azimuth_step))
            self.step = np.deg2rad(azimuth_step)
            self.start = -np.deg2rad(azimuth_fov) / 2 + phase * self.step
        self.azimuth = self.start + self.step * np.arange(self.num_azimuth)
        self.cos_el, self.sin_el = np.cos(self.elevation), np.sin(self.elevation)
        self.cos_az, self.sin_az = np.cos(self.azimuth), np.sin(self.azimuth)

    @property
    def num_rays(self) -> int:
        return len(self.elevation) * self.num_azimuth

    def pairs(self, az_lo, az_hi, el_lo, el_hi) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ray index, object index, directions ``[P, 3]``) of the rays inside each object's angular
        window ``[az_lo, az_hi] x [el_lo, el_hi]`` (radians, ``az_hi - az_lo < pi``)."""
        rays, objects = [], []
        for k in range(len(az_lo)):
            columns = np.arange(int(np.ceil((az_lo[k] - self.start) / self.step)),
                                int(np.floor((az_hi[k] - self.start) / self.step)) + 1)
            columns = columns % self.num_azimuth if self.full else \
                columns[(columns >= 0) & (columns < self.num_azimuth)]
            beams = np.nonzero((self.elevation >= el_lo[k]) & (self.elevation <= el_hi[k]))[0]
            ray = (beams[:, None] * self.num_azimuth + columns[None, :]).reshape(-1)
            rays.append(ray)
            objects.append(np.full(ray.size, k))
        ray = np.concatenate(rays) if rays else np.zeros(0, dtype=np.int64)
        obj = np.concatenate(objects) if objects else np.zeros(0, dtype=np.int64)
        beam, column = np.divmod(ray, self.num_azimuth)
        dirs = np.stack([self.cos_el[beam] * self.cos_az[column], self.cos_el[beam] * self.sin_az[column],
                         self.sin_el[beam]], axis=1)
        return ray, obj, dirs


def _elevation_window(z_bottom, z_top, near, far):
    """Elevations (radians) under which a vertical extent ``[z_bottom, z_top]`` at horizontal distances
    ``[near, far]`` can be seen from the sensor at z = 0 (conservative)."""
    top = np.arctan2(z_top, np.where(z_top > 0, near, far))
    bottom = np.arctan2(z_bottom, np.where(z_bottom < 0, near, far))
    return bottom, top


def _cast_boxes(rays: _Rays, boxes: np.ndarray):
    """First hits on ``[M, 7]`` boxes: (ray, object, distance, |cos incidence|) of every hit pair."""
    corners = _box_footprint(boxes)
    centre_az = np.arctan2(boxes[:, 1], boxes[:, 0])
    offsets = _wrap(np.arctan2(corners[..., 1], corners[..., 0]) - centre_az[:, None])
    distance = np.hypot(boxes[:, 0], boxes[:, 1])
    radius = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4])
    el_lo, el_hi = _elevation_window(boxes[:, 2] - boxes[:, 5] / 2, boxes[:, 2] + boxes[:, 5] / 2,
                                     np.maximum(distance - radius, 0.1), distance + radius)
    ray, obj, d = rays.pairs(centre_az + offsets.min(1), centre_az + offsets.max(1), el_lo, el_hi)
    # slab test in the box frame (the sensor is the origin)
    c, s = np.cos(boxes[obj, 6]), np.sin(boxes[obj, 6])
    rel = -boxes[obj, :3]
    origin = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=1)
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
    local = np.where(local == 0, 1e-30, local)          # a ray parallel to a slab: +-inf, never NaN
    half = boxes[obj, 3:6] / 2
    t1, t2 = (-half - origin) / local, (half - origin) / local
    entry = np.minimum(t1, t2)
    near, far = entry.max(axis=1), np.maximum(t1, t2).min(axis=1)
    hit = (near <= far) & (near > 0)
    face = entry.argmax(axis=1)                           # the slab entered last is the face hit
    cos_incidence = np.abs(np.take_along_axis(local, face[:, None], axis=1)[:, 0])
    return ray[hit], obj[hit], near[hit], cos_incidence[hit]


def _cast_cylinders(rays: _Rays, cylinders: np.ndarray):
    """First hits on upright cylinders ``[M, 5]`` (x, y, z_bottom, radius, height), side or top cap."""
    distance = np.hypot(cylinders[:, 0], cylinders[:, 1])
    centre_az = np.arctan2(cylinders[:, 1], cylinders[:, 0])
    spread = np.arcsin(np.clip(cylinders[:, 3] / distance, 0, 1))
    z_bottom, z_top = cylinders[:, 2], cylinders[:, 2] + cylinders[:, 4]
    el_lo, el_hi = _elevation_window(z_bottom, z_top, np.maximum(distance - cylinders[:, 3], 0.1),
                                     distance + cylinders[:, 3])
    ray, obj, d = rays.pairs(centre_az - spread, centre_az + spread, el_lo, el_hi)
    cx, cy, r = cylinders[obj, 0], cylinders[obj, 1], cylinders[obj, 3]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = -2 * (cx * d[:, 0] + cy * d[:, 1])
    disc = b ** 2 - 4 * a * (cx ** 2 + cy ** 2 - r ** 2)
    t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * np.maximum(a, 1e-12))
    z_side = t_side * d[:, 2]
    side = (disc >= 0) & (t_side > 0) & (z_side >= z_bottom[obj]) & (z_side <= z_top[obj])
    # the top cap, seen from above when the object is lower than the sensor
    t_cap = z_top[obj] / np.where(d[:, 2] < 0, d[:, 2], -1e-30)
    cap = (d[:, 2] < 0) & (t_cap > 0) & \
        ((t_cap * d[:, 0] - cx) ** 2 + (t_cap * d[:, 1] - cy) ** 2 <= r ** 2)
    hit = side | cap
    use_cap = cap[hit] & (~side[hit] | (t_cap[hit] < t_side[hit]))
    ray, obj, d, cx, cy, r = ray[hit], obj[hit], d[hit], cx[hit], cy[hit], r[hit]
    t = np.where(use_cap, t_cap[hit], t_side[hit])
    radial = ((t * d[:, 0] - cx) * d[:, 0] + (t * d[:, 1] - cy) * d[:, 1]) / r
    cos_incidence = np.where(use_cap, np.abs(d[:, 2]), np.abs(radial))
    return ray, obj, t, np.clip(cos_incidence, 0, 1)


def _place(rng, count: int, radius: float, placed: List[tuple], config: SceneConfig, min_gap: float = 1.0):
    """Up to ``count`` (x, y) positions whose circles of ``radius`` keep ``min_gap`` from each other and
    from the sensor."""
    out = []
    for _ in range(count * 30):
        if len(out) == count:
            break
        x, y = rng.uniform(*config.x_range), rng.uniform(*config.y_range)
        if np.hypot(x, y) > radius + min_gap and \
                all((x - px) ** 2 + (y - py) ** 2 > (radius + pr + min_gap) ** 2 for px, py, pr in placed):
            placed.append((x, y, radius))
            out.append((x, y))
    return out


def _count(rng, bounds) -> int:
    return int(rng.integers(bounds[0], bounds[1], endpoint=True))


def generate_scene(seed: int = 0, config: SceneConfig = SceneConfig()) -> Scene:
    """A seeded synthetic scene; the same seed and config give the same bits.

    Args:
        seed (int): seed of the scene's ``numpy.random.Generator`` (default: 0).
        config (SceneConfig): layout and sensor model (default: ``SceneConfig()``).

    Example:
        >>> scene = generate_scene(seed=0)
        >>> scene.points.shape[1], scene.boxes.shape[1], CLASSES[scene.labels[0]]
        (4, 7, 'Car')
    """
    rng = np.random.default_rng(seed)
    ground = -SENSOR_HEIGHT
    placed: List[tuple] = []
    mean_l, mean_w, mean_h = config.car_size
    cars = []
    for x, y in _place(rng, _count(rng, config.num_cars), 0.5 * np.hypot(mean_l, mean_w) + 0.3, placed, config):
        l, w, h = rng.normal(mean_l, 0.3), rng.normal(mean_w, 0.1), rng.normal(mean_h, 0.1)
        cars.append((x, y, ground + h / 2, l, w, h, rng.uniform(-np.pi, np.pi)))
    peds = [(x, y, ground, rng.uniform(0.25, 0.35), rng.uniform(1.55, 1.9))
            for x, y in _place(rng, _count(rng, config.num_pedestrians), 0.4, placed, config)]
    poles = [(x, y, ground, 0.12, rng.uniform(3.0, 6.0))
             for x, y in _place(rng, _count(rng, config.num_poles), 0.2, placed, config)]
    buildings = []
    for side in (-1, 1):     # building fronts beyond the placement area on both sides of the road
        for _ in range(_count(rng, config.num_buildings)):
            buildings.append((rng.uniform(5, 60), side * rng.uniform(22, 30), ground + 4, rng.uniform(8, 20),
                              rng.uniform(1, 3), 8.0, rng.normal(0, 0.08)))
    car_boxes = np.asarray(cars, dtype=np.float64).reshape(-1, 7)
    building_boxes = np.asarray(buildings, dtype=np.float64).reshape(-1, 7)
    cylinders = np.asarray(peds + poles, dtype=np.float64).reshape(-1, 5)
    num_cars, num_buildings, num_peds = len(car_boxes), len(building_boxes), len(peds)

    # surface ids: 0 ground, then cars, buildings, pedestrians, poles
    kinds = np.concatenate([[_GROUND], np.full(num_cars, _CAR), np.full(num_buildings, _BUILDING),
                            np.full(num_peds, _PEDESTRIAN), np.full(len(poles), _POLE)])
    reflectivity = np.array([_REFLECTIVITY[k] for k in kinds]) * rng.uniform(0.7, 1.3, len(kinds))

    rays = _Rays(config.elevations, config.azimuth_fov, config.azimuth_step, phase=rng.uniform())
    all_boxes = np.concatenate([car_boxes, building_boxes])
    box_ray, box_obj, box_t, box_cos = _cast_boxes(rays, all_boxes)
    cyl_ray, cyl_obj, cyl_t, cyl_cos = _cast_cylinders(rays, cylinders)
    ray = np.concatenate([box_ray, cyl_ray])
    surface = np.concatenate([1 + box_obj, 1 + len(all_boxes) + cyl_obj])
    t_hit = np.concatenate([box_t, cyl_t])
    cos_hit = np.concatenate([box_cos, cyl_cos])

    # the ground under every downward ray, then the nearest object hit along each ray replaces it
    beam = np.repeat(np.arange(len(rays.elevation)), rays.num_azimuth)
    down = rays.sin_el[beam] < 0
    t = np.where(down, ground / np.where(down, rays.sin_el[beam], -1.0), np.inf)
    cos_incidence = np.abs(rays.sin_el[beam])
    which = np.zeros(rays.num_rays, dtype=np.int64)
    nearest = np.full(rays.num_rays, np.inf)
    np.minimum.at(nearest, ray, t_hit)
    first = t_hit == nearest[ray]
    closer = first & (t_hit < t[ray])
    t[ray[closer]] = t_hit[closer]
    which[ray[closer]] = surface[closer]
    cos_incidence[ray[closer]] = cos_hit[closer]

    in_range = np.isfinite(t) & (t < config.max_range)
    drop = config.dropout + 0.25 * np.clip(t / config.max_range, 0, 1) ** 2 + 0.3 * (1 - cos_incidence) ** 8
    keep = np.nonzero(in_range & (rng.random(rays.num_rays) >= drop))[0]
    rng_noise = rng.normal(0, config.range_noise, keep.size)
    distance = t[keep] + rng_noise
    b, a = np.divmod(keep, rays.num_azimuth)
    dirs = np.stack([rays.cos_el[b] * rays.cos_az[a], rays.cos_el[b] * rays.sin_az[a], rays.sin_el[b]], axis=1)
    hit_surface = which[keep]
    intensity = reflectivity[hit_surface] * (0.3 + 0.7 * cos_incidence[keep]) * np.exp(-distance / 100.0)
    intensity = np.clip(intensity + rng.normal(0, 0.03, keep.size), 0, 1)
    points = np.concatenate([dirs * distance[:, None], intensity[:, None]], axis=1).astype(np.float32)

    counts = np.bincount(hit_surface, minlength=len(kinds))
    ped_boxes = np.asarray([(x, y, z + h / 2, 2 * r, 2 * r, h, 0.0) for x, y, z, r, h in peds]).reshape(-1, 7)
    first_ped = 1 + num_cars + num_buildings
    return Scene(points=points,
                 boxes=np.concatenate([car_boxes, ped_boxes]).astype(np.float32),
                 labels=np.concatenate([np.zeros(num_cars, np.int64), np.ones(num_peds, np.int64)]),
                 num_points_in_box=np.concatenate([counts[1:1 + num_cars],
                                                   counts[first_ped:first_ped + num_peds]]).astype(np.int64))
