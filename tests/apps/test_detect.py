import subprocess
import sys

import numpy as np
import pytest

from irregconv.apps.detector_training import save_checkpoint
from irregconv.data.kitti import read_kitti_calib, read_kitti_labels
from irregconv.data.points import read_points
from irregconv.models.detector import CenterPointDetector, DetectorConfig
from irregconv.testing import data_path, with_data


@with_data("lidar", "kitti_training_000000_label_2.txt")
def test_kitti_labels_in_lidar_frame_contain_points():
    calib = read_kitti_calib(data_path("lidar", "kitti_training_000000_calib.txt"))
    boxes, names = read_kitti_labels(data_path("lidar", "kitti_training_000000_label_2.txt"), calib)
    assert names.tolist() == ["Pedestrian"]
    points = read_points(data_path("lidar", "kitti_training_000000.bin"))
    x, y, z, l, w, h, yaw = boxes[0]
    local = points[:, :3] - boxes[0, :3]
    c, s = np.cos(yaw), np.sin(yaw)
    u, v = c * local[:, 0] + s * local[:, 1], -s * local[:, 0] + c * local[:, 1]
    def count(margin):
        return int(((np.abs(u) < l / 2 + margin) & (np.abs(v) < w / 2 + margin)
                    & (np.abs(local[:, 2]) < h / 2 + margin)).sum())
    # the datasets README counts 376 points in this box; points within a millimetre of a face decide the
    # exact number, so the count must lie between the box shrunk and grown by 1 cm
    assert count(-0.01) <= 376 <= count(0.01)


@with_data("lidar", "kitti_training_000001.bin")
def test_detect_cli_on_real_kitti(tmp_path):
    ckpt = save_checkpoint(CenterPointDetector(DetectorConfig(channels=(8, 8, 16), bev_channels=16)),
                           tmp_path / "det.pt")
    out = subprocess.run([sys.executable, "-m", "irregconv", "detect", "--scan",
                          str(data_path("lidar", "kitti_training_000001.bin")), "--checkpoint", str(ckpt),
                          "--out", str(tmp_path / "bev.png"), "--score-threshold", "0.0"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "120268 points" in out.stdout and "labelled cars drawn" in out.stdout
    assert (tmp_path / "bev.png").stat().st_size > 10000


def test_detect_without_checkpoint_says_what_to_do(tmp_path):
    np.zeros((10, 4), np.float32).tofile(tmp_path / "scan.bin")
    out = subprocess.run([sys.executable, "-m", "irregconv", "detect", "--scan", str(tmp_path / "scan.bin"),
                          "--checkpoint", str(tmp_path / "none.pt")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "run `irregconv demo` first" in out.stderr
