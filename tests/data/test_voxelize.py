import numpy as np
import pytest
import torch

from irregconv.data import read_points, voxelize
from irregconv.testing import data_path, with_data, with_package

RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
SIZE = (0.05, 0.05, 0.1)


def _naive(points, size, point_range):
    """Dict (z, y, x) -> list of point rows, with float32 floor as spconv."""
    lo = np.asarray(point_range[:3], np.float32)
    grid = np.round((np.asarray(point_range[3:], np.float32) - lo) / np.asarray(size, np.float32)).astype(int)
    cells = {}
    for row, p in enumerate(points):
        if not np.isfinite(p).all():
            continue
        c = np.floor((p[:3] - lo) / np.asarray(size, np.float32)).astype(int)
        if (c < 0).any() or (c >= grid).any():
            continue
        cells.setdefault((c[2], c[1], c[0]), []).append(row)
    return cells


@pytest.mark.parametrize("reduce", ["mean", "sum", "max", "first", "count"])
def test_matches_naive_grouping(reduce):
    rng = np.random.default_rng(0)
    points = rng.uniform([-1, -1, -1, 0], [3, 3, 2, 1], size=(400, 4)).astype(np.float32)
    points[5, 0] = np.nan
    size, point_range = (0.5, 0.5, 0.5), (0, 0, 0, 2, 2, 1)
    v = voxelize(points, size, point_range, reduce=reduce)
    cells = _naive(points, size, point_range)
    keys = sorted(cells)
    assert v.coords[:, 1:].tolist() == [list(k) for k in keys]
    assert (v.coords[:, 0] == 0).all()
    for row, key in enumerate(keys):
        group = points[cells[key]]
        expected = {"mean": group.mean(0), "sum": group.sum(0), "max": group.max(0), "first": group[0],
                    "count": np.array([len(group)], np.float32)}[reduce]
        np.testing.assert_allclose(v.feats[row].numpy(), expected, rtol=1e-5, atol=1e-6)
        assert (v.point_to_voxel[cells[key]] == row).all()
    assert v.dropped_nonfinite == 1
    assert v.dropped_out_of_range == 399 - sum(len(c) for c in cells.values())
    assert v.spatial_shape == (2, 4, 4)


def test_caps_and_batch():
    points = np.array([[0.1, 0.1, 0.1, 1], [0.2, 0.1, 0.1, 2], [0.3, 0.1, 0.1, 3], [1.1, 0.1, 0.1, 4]], np.float32)
    v = voxelize(points, (1, 1, 1), (0, 0, 0, 2, 2, 2), max_points_per_voxel=2)
    torch.testing.assert_close(v.feats[:, 3], torch.tensor([1.5, 4.0]))
    assert v.dropped_over_capacity == 1 and v.point_to_voxel.tolist() == [0, 0, -1, 1]
    v = voxelize(points[::-1].copy(), (1, 1, 1), (0, 0, 0, 2, 2, 2), max_voxels=1)   # first reached in point order
    assert v.coords.tolist() == [[0, 0, 0, 1]] and v.dropped_over_capacity == 3
    b = voxelize([points, points[:1]], (1, 1, 1), (0, 0, 0, 2, 2, 2))
    assert b.batch_size == 2 and b.coords[:, 0].tolist() == [0, 0, 1]
    x = b.to_sparse_tensor()
    assert x.num_sites == 3 and x.spatial_shape == (2, 2, 2)
    torch.testing.assert_close(b.devoxelize(b.feats)[:4], b.feats[b.point_to_voxel[:4]])


def test_empty_and_all_dropped():
    v = voxelize(np.zeros((0, 4), np.float32), (1, 1, 1), (0, 0, 0, 2, 2, 2))
    assert v.feats.shape == (0, 4) and v.coords.shape == (0, 4)
    v = voxelize(np.full((3, 4), np.inf, np.float32), (1, 1, 1), (0, 0, 0, 2, 2, 2))
    assert v.dropped_nonfinite == 3 and v.to_sparse_tensor().num_sites == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(voxel_size=(0, 1, 1)), "voxel_size"), (dict(voxel_size=(1, 1)), "voxel_size"),
    (dict(point_range=(0, 0, 0, 2, -1, 2)), "inverted on y"), (dict(point_range=(0, 0, 0, 2, 2)), "point_range"),
    (dict(reduce="median"), "reduce"), (dict(max_voxels=0), "max_voxels"),
])
def test_bad_arguments(kwargs, match):
    args = dict(points=np.zeros((2, 4), np.float32), voxel_size=(1, 1, 1), point_range=(0, 0, 0, 2, 2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        voxelize(**args)


def test_bad_points():
    with pytest.raises(ValueError, match=r"\[N, F\] with F >= 3"):
        voxelize(np.zeros((4, 2), np.float32), (1, 1, 1), (0, 0, 0, 1, 1, 1))
    with pytest.raises(TypeError, match="floating point"):
        voxelize(torch.zeros(4, 3, dtype=torch.long), (1, 1, 1), (0, 0, 0, 1, 1, 1))


@with_package("spconv")
@with_data("lidar", "kitti_training_000000.bin")
def test_parity_with_spconv_point_to_voxel():
    from spconv.pytorch.utils import PointToVoxel
    points = read_points(data_path("lidar", "kitti_training_000000.bin"))
    gen = PointToVoxel(vsize_xyz=list(SIZE), coors_range_xyz=list(RANGE), num_point_features=4,
                       max_num_voxels=200_000, max_num_points_per_voxel=5)
    voxels, coords, counts = gen(torch.from_numpy(points))
    order = torch.argsort((coords[:, 0].long() * 1600 + coords[:, 1]) * 1408 + coords[:, 2])
    mine = voxelize(points, SIZE, RANGE, max_points_per_voxel=5)
    assert mine.coords.shape[0] == 41281
    assert torch.equal(mine.coords[:, 1:], coords[order])
    assert torch.equal(mine.num_points.int(), counts[order])
    torch.testing.assert_close(mine.feats, (voxels.sum(1) / counts.unsqueeze(1))[order], rtol=1e-6, atol=1e-6)
