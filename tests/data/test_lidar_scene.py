import numpy as np

from irregconv.data.boxes import bev_corners
from irregconv.data.lidar_scene import SENSOR_HEIGHT, generate_scene


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
