import matplotlib.image
import numpy as np
import pytest

from irregconv.data import generate_scene, voxelize
from irregconv.viz import plot_bev, plot_training_curve, plot_training_curves

RANGE = (0, -20, -3, 40, 20, 1)


def _pixels_near(image, rgb, tol=0.1):
    return int((np.abs(image[..., :3] - np.asarray(rgb)) < tol).all(axis=-1).sum())


def test_scene_with_boxes(tmp_path):
    scene = generate_scene(0)
    cars = scene.boxes[scene.labels == 0]
    path = plot_bev(tmp_path / "sub" / "a.png", scene.points, cars, cars[:3] + 0.3, np.array([0.9, 0.8, 0.5]),
                    point_range=RANGE, title="scene 0")
    assert path == tmp_path / "sub" / "a.png" and path.stat().st_size > 50_000
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (960, 960)
    assert _pixels_near(image, (0, 1, 0)) > 200                      # lime ground-truth outlines
    assert _pixels_near(image, (1, 0, 0)) > 100                      # red predictions
    assert image[..., :3].std() > 0.1                                # not a blank canvas


def test_intensity_colouring_differs_from_height(tmp_path):
    points = generate_scene(1).points
    height = matplotlib.image.imread(plot_bev(tmp_path / "h.png", points, point_range=RANGE))
    intensity = matplotlib.image.imread(plot_bev(tmp_path / "i.png", points, point_range=RANGE, color_by="intensity"))
    assert np.abs(height - intensity).max() > 0.5


def test_voxel_raster(tmp_path):
    points = generate_scene(2).points
    size = (0.4, 0.4, 0.4)
    v = voxelize(points, size, RANGE)
    zyx = v.coords[:, 1:].double().numpy()
    centres = np.stack([RANGE[0] + (zyx[:, 2] + 0.5) * size[0], RANGE[1] + (zyx[:, 1] + 0.5) * size[1]], axis=1)
    path = plot_bev(tmp_path / "v.png", points[:0], point_range=RANGE, voxels=centres,
                    voxel_values=v.feats[:, 2].numpy(), voxel_size=size)
    image = matplotlib.image.imread(path)
    assert image[..., :3].std() > 0.1
    # without a range the view is the voxels' extent
    assert plot_bev(tmp_path / "w.png", points[:0], voxels=centres, voxel_values=np.ones(len(centres)),
                    voxel_size=size).stat().st_size > 10_000


def test_training_curves(tmp_path):
    one = plot_training_curve(np.exp(-np.linspace(0, 3, 200)), tmp_path / "loss.png", title="loss")
    two = plot_training_curves(tmp_path / "two.png", {"loss": np.linspace(3, 1, 50), "accuracy": np.linspace(0, 1, 50)},
                               xlabel="epoch")
    assert one.stat().st_size > 10_000 and two.stat().st_size > 10_000
    assert matplotlib.image.imread(two).shape[1] > matplotlib.image.imread(one).shape[1]   # two panels side by side


def test_bad_arguments(tmp_path):
    points = np.zeros((10, 3))
    with pytest.raises(ValueError, match="color_by must be one of"):
        plot_bev(tmp_path / "a.png", points, color_by="ring")
    with pytest.raises(ValueError, match="intensity in column 3"):
        plot_bev(tmp_path / "a.png", points, color_by="intensity")
    with pytest.raises(ValueError, match="voxels .* need voxel_values"):
        plot_bev(tmp_path / "a.png", points, voxels=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="curves is empty"):
        plot_training_curves(tmp_path / "b.png", {})
