import numpy as np

from irregconv.viz import plot_bev, plot_training_curves


def test_pictures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform([0, -20, -2], [40, 20, 1], size=(2000, 3))
    boxes = np.array([[10, 0, -1, 4, 2, 1.5, 0.3]])
    path = plot_bev(tmp_path / "a.png", points, boxes, boxes + 0.2, np.array([0.8]), point_range=(0, -20, -3, 40, 20, 1),
                    voxels=points[:100, :2], voxel_values=np.arange(100.0), voxel_size=(0.2, 0.2, 0.2), title="t")
    assert path.stat().st_size > 20000
    curve = plot_training_curves(tmp_path / "b.png", {"loss": np.linspace(3, 1, 50), "acc": np.linspace(0, 1, 50)})
    assert curve.stat().st_size > 10000
