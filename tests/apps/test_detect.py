import subprocess
import sys

import numpy as np
import pytest

from irregconv.apps.detect import find_kitti_labels, to_detector_frame, view_range
from irregconv.apps.detector_training import save_checkpoint
from irregconv.cli import main
from irregconv.models.detector import CenterPointDetector, DetectorConfig
from irregconv.testing import data_path, with_data, with_package

NUSCENES = "nuscenes_n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained detector on the default geometry (the CLI's plumbing, not its accuracy, is tested)."""
    import torch
    torch.manual_seed(0)
    return save_checkpoint(CenterPointDetector(DetectorConfig(neck_channels=8)), tmp_path_factory.mktemp("ck") / "d.pt")


@pytest.mark.slow
@with_data("lidar", "kitti_training_000001.bin")
def test_detect_cli_on_real_kitti_draws_the_labelled_car(checkpoint, tmp_path):
    out = subprocess.run([sys.executable, "-m", "irregconv", "detect", "--scan",
                          str(data_path("lidar", "kitti_training_000001.bin")), "--checkpoint", str(checkpoint),
                          "--out", str(tmp_path / "bev.png"), "--score-threshold", "0.0", "--nms", "rotated"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "120268 points" in out.stdout and "1 labelled Car boxes drawn from kitti_training_000001_label_2.txt" \
        in out.stdout
    assert (tmp_path / "bev.png").stat().st_size > 10000


@with_data("lidar", NUSCENES)
def test_detect_on_nuscenes(checkpoint, tmp_path, capsys):
    assert main(["detect", "--scan", str(data_path("lidar", NUSCENES)), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "nu.png")]) == 0
    assert "34688 points" in capsys.readouterr().out


@with_package("open3d")
@with_data("pointclouds", "pcl_bunny.pcd")
def test_detect_on_a_pcd_file(checkpoint, tmp_path, capsys):
    assert main(["detect", "--scan", str(data_path("pointclouds", "pcl_bunny.pcd")), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "bunny.png")]) == 0
    assert "397 points" in capsys.readouterr().out and (tmp_path / "bunny.png").is_file()


def test_detect_errors_say_what_to_do(checkpoint, tmp_path):
    np.zeros((10, 4), np.float32).tofile(tmp_path / "scan.bin")
    with pytest.raises(SystemExit, match="run `irregconv demo` first"):
        main(["detect", "--scan", str(tmp_path / "scan.bin"), "--checkpoint", str(tmp_path / "none.pt")])
    (tmp_path / "bad.bin").write_bytes(b"\0" * 10)
    with pytest.raises(SystemExit, match="irregconv detect: read_points: .*not a multiple"):
        main(["detect", "--scan", str(tmp_path / "bad.bin"), "--checkpoint", str(checkpoint)])
    with pytest.raises(SystemExit, match="irregconv detect: read_points: no such file"):
        main(["detect", "--scan", str(tmp_path / "missing.bin"), "--checkpoint", str(checkpoint)])


def test_points_are_brought_to_the_kitti_frame(tmp_path):
    nusc = np.array([[1.0, 2.0, -1.0, 255.0, 7.0]], np.float32)
    np.testing.assert_allclose(to_detector_frame(nusc, tmp_path / "a.pcd.bin", 4), [[2.0, -1.0, -1.0, 1.0]])
    kitti = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    np.testing.assert_allclose(to_detector_frame(kitti, tmp_path / "a.bin", 4), kitti)
    coloured = np.array([[1.0, 2.0, -1.0, 0.9, 0.1, 0.2]], np.float32)
    np.testing.assert_allclose(to_detector_frame(coloured, tmp_path / "a.ply", 4), [[1.0, 2.0, -1.0, 0.0]])
    np.testing.assert_allclose(to_detector_frame(kitti[:, :3], tmp_path / "a.npy", 4), [[1.0, 2.0, -1.0, 0.0]])


def test_kitti_labels_are_found_in_both_layouts(tmp_path):
    (tmp_path / "velodyne").mkdir()
    scan = tmp_path / "velodyne" / "000007.bin"
    assert find_kitti_labels(scan) is None
    for folder in ("label_2", "calib"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "000007.txt").write_text("")
    assert find_kitti_labels(scan) == (tmp_path / "label_2" / "000007.txt", tmp_path / "calib" / "000007.txt")
    flat = tmp_path / "x_000001.bin"
    (tmp_path / "x_000001_label_2.txt").write_text("")
    (tmp_path / "x_000001_calib.txt").write_text("")
    assert find_kitti_labels(flat) == (tmp_path / "x_000001_label_2.txt", tmp_path / "x_000001_calib.txt")


def test_view_grows_to_show_the_labelled_boxes():
    assert view_range((0, -16, -3, 32, 16, 2), None) == (0, -16, -3, 32, 16, 2)
    grown = view_range((0, -16, -3, 32, 16, 2), np.array([[58.8, 16.6, -0.8, 3.7, 1.9, 1.7, 0.0]]))
    assert grown == pytest.approx((0, -16, -3, 61.8, 19.6, 2))
