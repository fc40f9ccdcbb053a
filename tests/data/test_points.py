import numpy as np
import pytest

from irregconv.data import read_points
from irregconv.testing import data_path, with_data, with_package


@with_data("lidar")
@pytest.mark.parametrize("name, shape", [("kitti_training_000000.bin", (115384, 4)),
                                         ("kitti_training_000001.bin", (120268, 4)),
                                         ("nuscenes_n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin",
                                          (34688, 5))])
def test_real_binary_scans(name, shape):
    points = read_points(data_path("lidar", name))
    assert points.shape == shape and points.dtype == np.float32


@with_package("open3d")
@with_data("pointclouds")
@pytest.mark.parametrize("name, total, finite, width", [("pcl_bunny.pcd", 397, 397, 3),
                                                         ("pcl_office1.pcd", 307200, 254456, 6)])
def test_real_pcd(name, total, finite, width):
    points = read_points(data_path("pointclouds", name))
    assert points.shape == (total, width)
    assert np.isfinite(points[:, :3]).all(axis=1).sum() == finite


@with_package("open3d")
def test_ply_and_numpy_round_trip(tmp_path):
    import open3d
    xyz = np.random.default_rng(0).normal(size=(50, 3))
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(xyz))
    open3d.io.write_point_cloud(str(tmp_path / "a.ply"), cloud)
    np.testing.assert_allclose(read_points(tmp_path / "a.ply"), xyz.astype(np.float32), rtol=1e-6)
    np.save(tmp_path / "b.npy", xyz)
    np.savez(tmp_path / "c.npz", points=xyz, other=xyz)
    np.testing.assert_array_equal(read_points(tmp_path / "b.npy"), xyz.astype(np.float32))
    np.testing.assert_array_equal(read_points(tmp_path / "c.npz"), xyz.astype(np.float32))


def test_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_points(tmp_path / "missing.bin")
    (tmp_path / "short.bin").write_bytes(b"\0" * 18)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        read_points(tmp_path / "short.bin")
    (tmp_path / "short.pcd.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="not a multiple of 20"):
        read_points(tmp_path / "short.pcd.bin")
    (tmp_path / "scan.las").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown point file type"):
        read_points(tmp_path / "scan.las")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"expected \[N, F\]"):
        read_points(tmp_path / "flat.npy")


@with_package("open3d")
def test_corrupt_pcd(tmp_path):
    (tmp_path / "bad.pcd").write_text("VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\n")
    with pytest.raises(ValueError, match="corrupt, truncated"):
        read_points(tmp_path / "bad.pcd")
