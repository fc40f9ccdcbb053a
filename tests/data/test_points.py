import numpy as np
import pytest

from irregconv.data import read_points
from irregconv.testing import data_path, with_data, with_package

NUSCENES = "nuscenes_n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"


@with_data("lidar")
@pytest.mark.parametrize("name, shape", [("kitti_training_000000.bin", (115384, 4)),
                                         ("kitti_training_000001.bin", (120268, 4)),
                                         ("kitti_000008_reduced.bin", (17238, 4)),
                                         (NUSCENES, (34688, 5))])
def test_real_binary_scans(name, shape):
    points = read_points(data_path("lidar", name))
    assert points.shape == shape and points.dtype == np.float32
    raw = np.fromfile(data_path("lidar", name), dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(points, raw)


@with_data("lidar", NUSCENES)
def test_nuscenes_columns():
    points = read_points(data_path("lidar", NUSCENES))
    assert set(np.unique(points[:, 4]).astype(int)) <= set(range(32))      # ring index of a 32-beam sensor
    assert points[:, 3].max() <= 255


@with_data("pointclouds", "scannet_scene0000_00.bin")
def test_num_features_for_other_raw_layouts():
    path = data_path("pointclouds", "scannet_scene0000_00.bin")
    points = read_points(path, num_features=6)
    assert points.shape == (40684, 6)
    assert 0 <= points[:, 3:].min() and points[:, 3:].max() <= 255
    with pytest.raises(ValueError, match="num_features must be an int >= 3"):
        read_points(path, num_features=2)


@with_package("open3d")
@with_data("pointclouds")
@pytest.mark.parametrize("name, total, finite, width", [("pcl_bunny.pcd", 397, 397, 3),
                                                         ("pcl_office1.pcd", 307200, 254456, 6),
                                                         ("pcl_table_scene_mug_stereo_textured.pcd", 307200,
                                                          209280, 6)])
def test_real_pcd_keeps_every_point(name, total, finite, width):
    points = read_points(data_path("pointclouds", name))
    assert points.shape == (total, width) and points.dtype == np.float32
    assert np.isfinite(points[:, :3]).all(axis=1).sum() == finite
    if width == 6:
        colors = points[np.isfinite(points[:, :3]).all(axis=1), 3:]
        assert 0 <= colors.min() and colors.max() <= 1


def _cloud(xyz, rgb=None):
    import open3d
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(xyz))
    if rgb is not None:
        cloud.colors = open3d.utility.Vector3dVector(rgb)
    return cloud


@with_package("open3d")
@pytest.mark.parametrize("suffix, options", [(".ply", {}), (".ply", {"write_ascii": True}), (".pcd", {}),
                                             (".pcd", {"write_ascii": True}), (".pcd", {"compressed": True})])
@pytest.mark.parametrize("with_colors", [False, True])
def test_open3d_round_trip(tmp_path, suffix, options, with_colors):
    import open3d
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.uniform(size=(50, 3)) if with_colors else None
    path = tmp_path / f"cloud{suffix}"
    assert open3d.io.write_point_cloud(str(path), _cloud(xyz.astype(np.float64), rgb), **options)
    points = read_points(path)
    assert points.shape == (50, 6 if with_colors else 3)
    np.testing.assert_allclose(points[:, :3], xyz, rtol=1e-5, atol=1e-6)     # ASCII keeps ~6 digits
    if with_colors:
        np.testing.assert_allclose(points[:, 3:], rgb, atol=1 / 255)       # stored as 8-bit colours


@with_package("open3d")
@pytest.mark.parametrize("suffix, options", [(".ply", {}), (".ply", {"write_ascii": True}), (".pcd", {}),
                                             (".pcd", {"write_ascii": True}), (".pcd", {"compressed": True})])
def test_truncated_open3d_files_raise(tmp_path, suffix, options):
    # open3d alone returns points from uninitialised memory for some of these (ASCII PCD, PLY)
    import open3d
    xyz = np.random.default_rng(1).normal(size=(40, 3))
    path = tmp_path / f"cloud{suffix}"
    open3d.io.write_point_cloud(str(path), _cloud(xyz), **options)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"cut\.(ply|pcd) is truncated"):
        read_points(cut)


@with_package("open3d")
@with_data("pointclouds", "pcl_bunny.pcd")
def test_truncated_real_pcd_raises(tmp_path):
    data = data_path("pointclouds", "pcl_bunny.pcd").read_bytes()
    (tmp_path / "half.pcd").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="promises 397 points"):
        read_points(tmp_path / "half.pcd")


@with_package("open3d")
@pytest.mark.parametrize("text, match", [
    ("VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\n", "no complete PCD header"),
    ("VERSION .7\nFIELDS x y z\nPOINTS 2\nDATA ascii\n1 2 3\n4 5 6\n", "malformed PCD header"),
    ("VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nPOINTS 1\nDATA packed\n1 2 3\n", "encoding 'packed'"),
])
def test_corrupt_pcd_headers(tmp_path, text, match):
    (tmp_path / "bad.pcd").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_points(tmp_path / "bad.pcd")


@with_package("open3d")
def test_corrupt_ply(tmp_path):
    (tmp_path / "a.ply").write_text("not a ply file\n")
    with pytest.raises(ValueError, match="does not start with 'ply'"):
        read_points(tmp_path / "a.ply")
    (tmp_path / "b.ply").write_text("ply\nformat ascii 1.0\nelement face 1\nend_header\n")
    with pytest.raises(ValueError, match="element vertex N"):
        read_points(tmp_path / "b.ply")


def test_numpy_files(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(50, 4))
    np.save(tmp_path / "a.npy", xyz)
    np.savez(tmp_path / "b.npz", points=xyz, other=xyz[:, :2])
    np.savez(tmp_path / "c.npz", xyz)
    for name in ("a.npy", "b.npz", "c.npz"):
        points = read_points(tmp_path / name)
        assert points.dtype == np.float32 and points.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(points, xyz.astype(np.float32))


def test_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file.*missing.bin"):
        read_points(tmp_path / "missing.bin")
    (tmp_path / "short.bin").write_bytes(b"\0" * 18)
    with pytest.raises(ValueError, match="short.bin has 18 bytes, not a multiple of 16"):
        read_points(tmp_path / "short.bin")
    (tmp_path / "short.pcd.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="not a multiple of 20"):
        read_points(tmp_path / "short.pcd.bin")
    (tmp_path / "scan.las").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown point file type '\.las'.*supported"):
        read_points(tmp_path / "scan.las")
    with pytest.raises(ValueError, match="num_features applies to raw"):
        read_points(tmp_path / "scan.las", num_features=4)
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"flat.npy holds an array of shape \(5,\)"):
        read_points(tmp_path / "flat.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3)), b=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="name the point array 'points'"):
        read_points(tmp_path / "two.npz")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy is not a readable numpy file"):
        read_points(tmp_path / "junk.npy")
