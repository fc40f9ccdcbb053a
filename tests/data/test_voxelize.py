import numpy as np
import pytest
import torch

from irregconv import SparseTensor
from irregconv.data import read_points, voxelize
from irregconv.hashing import pack_keys
from irregconv.testing import DEVICES, data_path, with_data, with_package

KITTI_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
KITTI_SIZE = (0.05, 0.05, 0.1)
KITTI_SHAPE = (40, 1600, 1408)


def _naive(points, size, point_range):
    """(b, z, y, x) -> input rows, a plain loop with spconv's float32 floor; one scan or a list."""
    scans = points if isinstance(points, list) else [points]
    lo, size32 = np.asarray(point_range[:3], np.float32), np.asarray(size, np.float32)
    grid = np.round((np.asarray(point_range[3:], np.float32) - lo) / size32).astype(int)
    cells, offset = {}, 0
    for b, scan in enumerate(scans):
        for row, p in enumerate(scan):
            if np.isfinite(p).all():
                c = np.floor((p[:3].astype(np.float32) - lo) / size32).astype(int)
                if (c >= 0).all() and (c < grid).all():
                    cells.setdefault((b, c[2], c[1], c[0]), []).append(offset + row)
        offset += len(scan)
    return cells


def _random_points(seed, n=400, dtype=np.float32):
    points = np.random.default_rng(seed).uniform([-1, -1, -1, 0], [3, 3, 2, 1], size=(n, 4)).astype(dtype)
    points[5:6, 0] = np.nan
    points[6:7, 3] = np.inf                     # a non-finite feature drops the point too
    return points


@pytest.mark.parametrize("reduce", ["mean", "sum", "max", "first", "count"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_naive_grouping(reduce, dtype):
    points = _random_points(0, dtype=dtype)
    size, point_range = (0.5, 0.5, 0.5), (0, 0, 0, 2, 2, 1)
    v = voxelize(points, size, point_range, reduce=reduce)
    cells = _naive(points, size, point_range)
    keys = sorted(cells)
    assert v.coords.dtype == torch.int32 and v.coords.tolist() == [list(k) for k in keys]
    assert v.feats.dtype == torch.from_numpy(points).dtype                  # features keep the points' dtype
    for row, key in enumerate(keys):
        group = points[cells[key]]
        expected = {"mean": group.mean(0), "sum": group.sum(0), "max": group.max(0), "first": group[0],
                    "count": np.array([len(group)])}[reduce]
        torch.testing.assert_close(v.feats[row], torch.from_numpy(expected.astype(dtype)))
        assert (v.point_to_voxel[cells[key]] == row).all()
        assert v.num_points[row] == len(group)
    kept = sum(len(c) for c in cells.values())
    assert int((v.point_to_voxel >= 0).sum()) == kept
    assert (v.dropped_nonfinite, v.dropped_out_of_range, v.dropped_over_capacity) == (2, 398 - kept, 0)
    assert v.spatial_shape == (2, 4, 4) and v.batch_size == 1


def test_voxel_index_in_float32_like_spconv():
    # 0.7 / 0.1 rounds up to exactly 7 in float32; in float64 it stays just below: cell 7, not 6
    points = np.array([[0.7, 0.05, 0.05, 1.0]], np.float32)
    assert np.floor(np.float64(points[0, 0]) / np.float64(np.float32(0.1))) == 6
    assert np.floor(0.7 / 0.1) == 6
    for dtype in (torch.float32, torch.float64):
        v = voxelize(torch.from_numpy(points).to(dtype), (0.1, 0.1, 0.1), (0, 0, 0, 1, 1, 1))
        assert v.coords.tolist() == [[0, 0, 0, 7]]


@with_data("lidar", "kitti_training_000000.bin")
def test_kitti_voxel_count_float32_vs_float64():
    points = read_points(data_path("lidar", "kitti_training_000000.bin"))
    v = voxelize(points, KITTI_SIZE, KITTI_RANGE)
    assert v.num_voxels == 41281 and v.spatial_shape == KITTI_SHAPE
    assert v.dropped_nonfinite == 0 and v.dropped_out_of_range + int(v.num_points.sum()) == len(points)
    # the float64 floor an exact implementation would use gives the 41,264
    p = points[:, :3].astype(np.float64)
    cell = np.floor((p - np.array(KITTI_RANGE[:3])) / np.array(KITTI_SIZE)).astype(np.int64)
    ok = ((cell >= 0) & (cell < np.array(KITTI_SHAPE[::-1]))).all(axis=1)
    assert len(np.unique(cell[ok], axis=0)) == 41264
    # sorted, unique, inside the grid
    keys = pack_keys(v.coords, v.spatial_shape, 1)
    assert torch.equal(keys, v.keys) and bool((keys[1:] > keys[:-1]).all())


def _spconv_sorted(coords):
    return torch.argsort((coords[:, 0].long() * KITTI_SHAPE[1] + coords[:, 1]) * KITTI_SHAPE[2] + coords[:, 2])


@with_package("spconv")
@with_data("lidar", "kitti_training_000000.bin")
def test_parity_with_spconv_point_to_voxel_uncapped():
    from spconv.pytorch.utils import PointToVoxel
    points = torch.from_numpy(read_points(data_path("lidar", "kitti_training_000000.bin")))
    mine = voxelize(points, KITTI_SIZE, KITTI_RANGE)
    cap = int(mine.num_points.max())                           # large enough that spconv drops nothing
    gen = PointToVoxel(vsize_xyz=list(KITTI_SIZE), coors_range_xyz=list(KITTI_RANGE), num_point_features=4,
                       max_num_voxels=60_000, max_num_points_per_voxel=cap)
    voxels, coords, counts, point_ids = gen.generate_voxel_with_id(points)
    order = _spconv_sorted(coords)                             # spconv: (z, y, x), in arrival order
    assert torch.equal(mine.coords[:, 0], torch.zeros(len(coords), dtype=torch.int32))
    assert torch.equal(mine.coords[:, 1:], coords[order])
    assert torch.equal(mine.num_points, counts[order].long())
    torch.testing.assert_close(mine.feats, (voxels.sum(1) / counts.unsqueeze(1))[order])
    assert torch.equal(point_ids, torch.where(mine.point_to_voxel >= 0, order[mine.point_to_voxel.clamp(min=0)], -1))


@with_package("spconv")
@with_data("lidar", "kitti_training_000000.bin")
def test_parity_with_spconv_point_to_voxel_capped():
    # both caps: spconv keeps the first points of each voxel and the voxels first reached
    from spconv.pytorch.utils import PointToVoxel
    points = torch.from_numpy(read_points(data_path("lidar", "kitti_training_000000.bin")))
    gen = PointToVoxel(vsize_xyz=list(KITTI_SIZE), coors_range_xyz=list(KITTI_RANGE), num_point_features=4,
                       max_num_voxels=20_000, max_num_points_per_voxel=5)
    voxels, coords, counts, point_ids = gen.generate_voxel_with_id(points)
    order = _spconv_sorted(coords)
    for reduce in ("first", "mean"):
        mine = voxelize(points, KITTI_SIZE, KITTI_RANGE, reduce=reduce, max_voxels=20_000, max_points_per_voxel=5)
        assert torch.equal(mine.coords[:, 1:], coords[order])
        expected = voxels[:, 0] if reduce == "first" else voxels.sum(1) / counts.unsqueeze(1)
        torch.testing.assert_close(mine.feats, expected[order], rtol=0 if reduce == "first" else 1e-6, atol=1e-6)
    assert torch.equal(mine.num_points, counts[order].long())
    assert torch.equal(point_ids, torch.where(mine.point_to_voxel >= 0, order[mine.point_to_voxel.clamp(min=0)], -1))
    # over capacity: every in-range point that spconv did not store in a voxel
    assert mine.dropped_over_capacity == len(points) - mine.dropped_out_of_range - int(counts.sum())


def test_caps():
    points = np.array([[0.1, 0.1, 0.1, 1], [0.2, 0.1, 0.1, 2], [0.3, 0.1, 0.1, 3], [1.1, 0.1, 0.1, 4]], np.float32)
    v = voxelize(points, (1, 1, 1), (0, 0, 0, 2, 2, 2), max_points_per_voxel=2)
    torch.testing.assert_close(v.feats[:, 3], torch.tensor([1.5, 4.0]))
    # the third point is left out of the mean but still lies in voxel 0 (spconv's point ids agree)
    assert v.dropped_over_capacity == 1 and v.point_to_voxel.tolist() == [0, 0, 0, 1]
    assert v.num_points.tolist() == [2, 1]
    v = voxelize(points[::-1].copy(), (1, 1, 1), (0, 0, 0, 2, 2, 2), max_voxels=1)   # first reached in point order
    assert v.coords.tolist() == [[0, 0, 0, 1]] and v.dropped_over_capacity == 3
    assert v.point_to_voxel.tolist() == [0, -1, -1, -1]


@pytest.mark.parametrize("reduce", ["mean", "max", "first"])
def test_batch_equals_scans_one_by_one(reduce):
    scans = [_random_points(s, n=n) for s, n in ((1, 300), (2, 0), (3, 200))]
    size, point_range = (0.25, 0.5, 0.5), (0, 0, 0, 2, 2, 1)
    batch = voxelize(scans, size, point_range, reduce=reduce, max_voxels=20, max_points_per_voxel=3)
    assert batch.batch_size == 3
    offset, row = 0, 0
    for b, scan in enumerate(scans):
        one = voxelize(scan, size, point_range, reduce=reduce, max_voxels=20, max_points_per_voxel=3)
        n = one.num_voxels
        assert torch.equal(batch.coords[row:row + n, 0], torch.full((n,), b, dtype=torch.int32))
        assert torch.equal(batch.coords[row:row + n, 1:], one.coords[:, 1:])
        assert torch.equal(batch.feats[row:row + n], one.feats)
        mapped = batch.point_to_voxel[offset:offset + len(scan)]
        assert torch.equal(torch.where(mapped >= 0, mapped - row, -1), one.point_to_voxel)
        offset, row = offset + len(scan), row + n
    assert row == batch.num_voxels
    # the same scans as one tensor with a batch vector
    flat = voxelize(torch.from_numpy(np.concatenate(scans)), size, point_range, reduce=reduce, max_voxels=20,
                    max_points_per_voxel=3, batch=torch.tensor([0] * 300 + [2] * 200))
    assert torch.equal(flat.coords, batch.coords) and torch.equal(flat.feats, batch.feats)
    assert torch.equal(flat.point_to_voxel, batch.point_to_voxel)


def test_sparse_tensor_and_devoxelize():
    scans = [_random_points(4), _random_points(5)]
    v = voxelize(scans, (0.5, 0.5, 0.5), (0, 0, 0, 2, 2, 1))
    x = v.to_sparse_tensor()
    reference = SparseTensor(v.feats, v.coords, v.spatial_shape, v.batch_size)
    assert x.spatial_shape == (2, 4, 4) and x.batch_size == 2
    assert torch.equal(x.coords, reference.coords) and torch.equal(x.sites.keys, reference.sites.keys)
    torch.testing.assert_close(x.dense(), reference.dense())
    voxel_feats = torch.randn(v.num_voxels, 3, dtype=torch.float64, requires_grad=True)
    per_point = v.devoxelize(voxel_feats)
    kept = v.point_to_voxel >= 0
    assert torch.equal(per_point[kept], voxel_feats[v.point_to_voxel[kept]])
    assert not per_point[~kept].any()
    per_point.sum().backward()
    torch.testing.assert_close(voxel_feats.grad[:, 0], v.num_points.double())   # every point of a voxel feeds it
    with pytest.raises(ValueError, match=r"devoxelize: voxel_feats must be \[N_vox, C\]"):
        v.devoxelize(voxel_feats[1:])


def test_deterministic_across_threads():
    points = torch.from_numpy(np.random.default_rng(0).normal(size=(20000, 4)).astype(np.float32))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(voxelize(points, (0.1, 0.1, 0.1), (-2, -2, -2, 2, 2, 2), reduce="sum"))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(other.feats, results[0].feats) and torch.equal(other.coords, results[0].coords)


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device):
    points = torch.from_numpy(_random_points(7)).to(device)
    v = voxelize(points, (0.5, 0.5, 0.5), (0, 0, 0, 2, 2, 1), max_points_per_voxel=4)
    cpu = voxelize(points.cpu(), (0.5, 0.5, 0.5), (0, 0, 0, 2, 2, 1), max_points_per_voxel=4)
    assert v.feats.device.type == v.coords.device.type == v.point_to_voxel.device.type == torch.device(device).type
    assert torch.equal(v.coords.cpu(), cpu.coords) and torch.equal(v.point_to_voxel.cpu(), cpu.point_to_voxel)
    torch.testing.assert_close(v.feats.cpu(), cpu.feats)


def test_empty_and_all_dropped():
    v = voxelize(np.zeros((0, 4), np.float32), (1, 1, 1), (0, 0, 0, 2, 2, 2))
    assert v.feats.shape == (0, 4) and v.coords.shape == (0, 4) and v.point_to_voxel.shape == (0,)
    v = voxelize(np.full((3, 4), np.inf, np.float32), (1, 1, 1), (0, 0, 0, 2, 2, 2))
    assert v.dropped_nonfinite == 3 and v.to_sparse_tensor().num_sites == 0
    assert v.point_to_voxel.tolist() == [-1, -1, -1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(voxel_size=(0, 1, 1)), "voxel_size must be 3 positive"),
    (dict(voxel_size=(-0.1, 1, 1)), "voxel_size must be 3 positive"),
    (dict(voxel_size=(1, 1)), "voxel_size must be 3 positive"),
    (dict(voxel_size=(1, np.inf, 1)), "voxel_size must be 3 positive"),
    (dict(voxel_size=(5, 1, 1)), r"larger than point_range \(0, 0, 0, 2, 2, 2\) on axis x"),
    (dict(point_range=(0, 0, 0, 2, -1, 2)), "inverted on y"),
    (dict(point_range=(0, 0, 1, 2, 2, 1)), "empty or inverted on z"),
    (dict(point_range=(0, 0, 0, 2, 2)), "point_range must be 6 finite"),
    (dict(point_range=(0, 0, np.nan, 2, 2, 2)), "point_range must be 6 finite"),
    (dict(reduce="median"), "reduce must be one of"),
    (dict(max_voxels=0), "max_voxels must be None or a positive int"),
    (dict(max_points_per_voxel=True), "max_points_per_voxel must be None or a positive int"),
    (dict(points=np.zeros((4, 2), np.float32)), r"\[N, F\] with F >= 3"),
    (dict(points=[np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32)]), r"same number of features F.*\[4, 5\]"),
    (dict(points=[]), "empty list"),
    (dict(points=[np.zeros((4, 4), np.float32)], batch=torch.zeros(4, dtype=torch.long)), "not both"),
    (dict(batch=torch.zeros(3, dtype=torch.long)), r"batch must be an integer tensor \[N\] = \[2\]"),
    (dict(batch=torch.zeros(2)), "batch must be an integer tensor"),
    (dict(batch=torch.tensor([0, -1])), "negative scan index"),
])
def test_bad_arguments(kwargs, match):
    args = dict(points=np.zeros((2, 4), np.float32), voxel_size=(1, 1, 1), point_range=(0, 0, 0, 2, 2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        voxelize(**args)


@pytest.mark.parametrize("points, match", [
    (torch.zeros(4, 3, dtype=torch.long), "floating point, got torch.int64"),
    ([[0.0, 0.0, 0.0]], "float tensor or ndarray"),
])
def test_bad_point_types(points, match):
    with pytest.raises(TypeError, match=match):
        voxelize(points, (1, 1, 1), (0, 0, 0, 1, 1, 1))
    with pytest.raises(TypeError, match="voxel_size must be 3 numbers"):
        voxelize(torch.zeros(1, 3), 0.1, (0, 0, 0, 1, 1, 1))
