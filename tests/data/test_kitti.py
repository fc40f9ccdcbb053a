import numpy as np
import pytest

from irregconv.data import points_in_boxes, read_kitti_calib, read_kitti_labels, read_points
from irregconv.testing import data_path, with_data

# the datasets README counts the LiDAR points inside each labelled box
README_COUNTS = {"000000": {"Pedestrian": 376}, "000001": {"Truck": 70, "Car": 9, "Cyclist": 18}}


def _frame(frame):
    points = read_points(data_path("lidar", f"kitti_training_{frame}.bin"))
    boxes, names = read_kitti_labels(data_path("lidar", f"kitti_training_{frame}_label_2.txt"),
                                     data_path("lidar", f"kitti_training_{frame}_calib.txt"))
    return points, boxes, names


@with_data("lidar", "kitti_training_000001_label_2.txt")
@pytest.mark.parametrize("frame", ["000000", "000001"])
def test_labelled_boxes_contain_the_readme_point_counts(frame):
    points, boxes, names = _frame(frame)
    assert list(names) == list(README_COUNTS[frame])                       # DontCare skipped, order kept
    assert boxes.dtype == np.float32 and boxes.shape == (len(names), 7)
    # the count depends on points lying within a millimetre of a face (conventions differ there):
    # it must sit between the counts in the box shrunk and grown by 1 cm
    for margin, compare in ((-0.02, np.less_equal), (0.02, np.greater_equal)):
        grown = boxes.copy()
        grown[:, 3:6] += margin
        counts = points_in_boxes(points, grown).sum(axis=0)
        for name, count in zip(names, counts):
            assert compare(count, README_COUNTS[frame][name]), (name, margin, count)


@with_data("lidar", "kitti_training_000000_label_2.txt")
def test_camera_to_lidar_conversion():
    calib = read_kitti_calib(data_path("lidar", "kitti_training_000000_calib.txt"))
    assert calib["P2"].shape == (3, 4) and calib["R0_rect"].shape == (3, 3)
    boxes, _ = read_kitti_labels(data_path("lidar", "kitti_training_000000_label_2.txt"), calib)
    # label: Pedestrian h 1.89 w 0.48 l 1.20, bottom centre (1.84, 1.47, 8.41) in the camera frame, rotation_y 0.01
    x, y, z, l, w, h, yaw = boxes[0].tolist()
    assert (l, w, h) == pytest.approx((1.20, 0.48, 1.89))
    assert yaw == pytest.approx(-0.01 - np.pi / 2)
    # back to the rectified camera frame: the bottom centre comes out where the label put it
    rect = np.eye(4)
    rect[:3, :3] = calib["R0_rect"]
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :] = calib["Tr_velo_to_cam"]
    bottom = rect @ velo_to_cam @ np.array([x, y, z - h / 2, 1.0])
    np.testing.assert_allclose(bottom[:3], [1.84, 1.47, 8.41], atol=1e-5)
    # the pedestrian stands on the ground about 8.7 m ahead of the LiDAR, 1.73 m above that ground
    assert 8 < x < 9.5 and z - h / 2 == pytest.approx(-1.6, abs=0.1)


def test_malformed_kitti_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="read_kitti_calib: no such file"):
        read_kitti_calib(tmp_path / "none.txt")
    (tmp_path / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(ValueError, match="has 3 numbers"):
        read_kitti_calib(tmp_path / "calib.txt")
    (tmp_path / "calib.txt").write_text("P0: " + " ".join(["1"] * 12) + "\n")
    with pytest.raises(ValueError, match="has no R0_rect"):
        read_kitti_calib(tmp_path / "calib.txt")
    calib = {"R0_rect": np.eye(3), "Tr_velo_to_cam": np.eye(3, 4)}
    (tmp_path / "label.txt").write_text("Car 0 0 0 1 2 3\n")
    with pytest.raises(ValueError, match="fewer than 15 fields"):
        read_kitti_labels(tmp_path / "label.txt", calib)
    (tmp_path / "label.txt").write_text("Car 0 0 0 1 2 3 4 h 1 1 1 1 1 0\n")
    with pytest.raises(ValueError, match="non-numeric box field"):
        read_kitti_labels(tmp_path / "label.txt", calib)
    (tmp_path / "label.txt").write_text("DontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n")
    boxes, names = read_kitti_labels(tmp_path / "label.txt", calib)
    assert boxes.shape == (0, 7) and names.shape == (0,)
