import time

import numpy as np

from irregconv.data.boxes import bev_corners, points_in_boxes
from irregconv.data.lidar_scene import HDL64_ELEVATIONS, SENSOR_HEIGHT, SceneConfig, generate_scene


def test_seeded_and_plausible():
    a, b, c = generate_scene(3), generate_scene(3), generate_scene(4)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.points, c.points)
    assert a.points.dtype == np.float32 and a.points.shape[1] == 4
    assert np.isfinite(a.points).all()
    assert a.points[:, 2].min() > -SENSOR_HEIGHT - 0.2           # nothing below the ground (noise aside)
    assert 0 <= a.points[:, 3].min() and a.points[:, 3].max() <= 1
    assert len(a.boxes) == len(a.labels) == len(a.num_points_in_box)


def test_points_lie_on_the_objects_they_hit():
    scene = generate_scene(7)
    for box, label, count in zip(scene.boxes, scene.labels, scene.num_points_in_box):
        if label != 0 or count == 0:
            continue
        grown = box.copy()
        grown[3:6] += 0.3                                         # range noise
        corners = bev_corners(grown[None])[0]
        x, y = scene.points[:, 0], scene.points[:, 1]
        inside = np.ones(len(x), dtype=bool)
        for i in range(4):
            (ax, ay), (bx, by) = corners[i], corners[(i + 1) % 4]
            inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
        inside &= np.abs(scene.points[:, 2] - box[2]) <= box[5] / 2 + 0.15
        assert inside.sum() >= 0.9 * count


def test_occluded_and_distant_objects_get_few_points():
    counts = np.concatenate([generate_scene(s).num_points_in_box for s in range(10)])
    assert (counts > 0).any() and (counts < 5).any()


def _elevation_azimuth(points):
    x, y, z = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64), points[:, 2].astype(np.float64)
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def test_hdl64_ring_pattern_and_azimuth_steps():
    elevations = np.asarray(HDL64_ELEVATIONS)
    assert len(elevations) == 64 and elevations[0] == 2.0 and elevations[-1] == -24.8
    gaps = -np.diff(elevations)
    np.testing.assert_allclose(gaps[:31], 10.33 / 31, rtol=1e-3)            # upper block, ~1/3 degree
    np.testing.assert_allclose(gaps[32:], 15.97 / 31, rtol=1e-3)            # lower block, ~1/2 degree
    scene = generate_scene(0)
    elevation, azimuth = _elevation_azimuth(scene.points)
    # range noise moves points along their ray: every point keeps its beam's elevation exactly
    ring = np.abs(elevation[:, None] - elevations[None, :]).argmin(axis=1)
    np.testing.assert_allclose(elevation, elevations[ring], atol=1e-4)
    assert len(np.unique(ring)) >= 60
    # and its azimuth is on the 0.17-degree grid of its sweep
    steps = (azimuth - azimuth.min()) / SceneConfig().azimuth_step
    np.testing.assert_allclose(steps, np.round(steps), atol=2e-3)
    assert -90 <= azimuth.min() and azimuth.max() <= 90


def test_occlusion_first_hit_only():
    # no return lies behind a car: the segment from the sensor to each point stays out of every car
    scene = generate_scene(2)
    cars = scene.boxes[scene.labels == 0].astype(np.float64)
    shrunk = cars.copy()
    shrunk[:, 3:6] -= 0.1                                              # the faces themselves are hit
    points = scene.points[::4, :3].astype(np.float64)
    for fraction in np.linspace(0.02, 0.97, 40):
        assert not points_in_boxes(points * fraction, shrunk).any(), fraction
    # and the cars do cast shadows: ground behind a near car is missing
    near = cars[np.argmin(np.hypot(cars[:, 0], cars[:, 1]))]
    _, azimuth = _elevation_azimuth(scene.points)
    centre = np.degrees(np.arctan2(near[1], near[0]))
    behind = (np.abs(azimuth - centre) < 1.0) & (np.hypot(scene.points[:, 0], scene.points[:, 1])
                                                 > np.hypot(near[0], near[1]) + 3)
    assert behind.sum() < 0.1 * (np.abs(azimuth - centre) < 1.0).sum()


def test_range_falloff_intensity_and_extent():
    points = np.concatenate([generate_scene(s).points for s in range(3)])
    distance = np.hypot(points[:, 0], points[:, 1])
    inside = ((points[:, :3] >= [0, -40, -3]) & (points[:, :3] < [70.4, 40, 1])).all(axis=1)
    assert inside.mean() > 0.9                                          # mostly within KITTI's range
    assert distance.max() < SceneConfig().max_range
    near_intensity = points[distance < 15, 3].mean()
    far_intensity = points[distance > 40, 3].mean()
    assert far_intensity < near_intensity                               # intensity falls with range
    # returns per ring step fall with range faster than the geometry alone (dropout)
    assert (distance < 20).sum() > 3 * (distance > 40).sum()


def test_full_sweep_and_config():
    full = generate_scene(0, SceneConfig(azimuth_fov=360.0))
    _, azimuth = _elevation_azimuth(full.points)
    assert (azimuth < -135).any() and (azimuth > 135).any()
    assert 80_000 < len(full.points) < 140_000                          # a KITTI scan has 115k-120k
    coarse = generate_scene(0, SceneConfig(azimuth_step=0.34))
    assert abs(len(coarse.points) / len(generate_scene(0).points) - 0.5) < 0.1
    empty = generate_scene(0, SceneConfig(num_cars=(0, 0), num_pedestrians=(0, 0)))
    assert empty.boxes.shape == (0, 7) and empty.labels.shape == (0,) and len(empty.points) > 0


def test_fast():
    start = time.perf_counter()
    for seed in range(3):
        generate_scene(seed)
    assert (time.perf_counter() - start) / 3 < 0.5                      # ~30 ms here
