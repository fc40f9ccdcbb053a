"""spconv.utils: the CPU voxel generators ``Point2VoxelCPU{1,2,3,4}d`` against spconv 2.3.8's, bit for bit, on the
KITTI scans (numpy, torch and cumm tensorview inputs), on points placed on voxel boundaries in 1 to 4 dimensions,
with caps that bind, ``clear_voxels=False`` and ``empty_mean``; bad input gives spconv's result or a clear error."""
import numpy as np
import pytest
import torch

from irregconv.compat import spconv
from irregconv.data import read_points
from irregconv.testing import data_path, with_data, with_package

needs_spconv = with_package("spconv")
needs_cumm = with_package("cumm")
KITTI_SCANS = ["kitti_training_000000.bin", "kitti_training_000001.bin", "kitti_000008_reduced.bin"]
#: OpenPCDet's KITTI voxelisation (SECOND, PV-RCNN): test-time cap, and a configuration whose caps bind
KITTI_GRID = ([0.05, 0.05, 0.1], [0.0, -40.0, -3.0, 70.4, 40.0, 1.0], 5, 40000)
SMALL_CAPS = ([0.2, 0.2, 0.4], [0.0, -40.0, -3.0, 70.4, 40.0, 1.0], 3, 5000)


def real_generator(ndim, *args):
    import spconv.utils as real
    return getattr(real, f"Point2VoxelCPU{ndim}d")(*args)


def run_real(generator, points, method="point_to_voxel", **kwargs):
    """spconv's result as numpy arrays (its generator takes a cumm tensorview)."""
    from cumm import tensorview as tv
    return [r.numpy() for r in getattr(generator, method)(tv.from_numpy(np.ascontiguousarray(points)), **kwargs)]


def assert_same(got, expected):
    assert len(got) == len(expected) == 3
    for ours, theirs in zip(got, expected):
        ours = ours.numpy()
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)  # bit for bit (NaN-free: voxels hold finite points only)


def as_kind(points, kind):
    if kind == "numpy":
        return points
    if kind == "torch":
        return torch.from_numpy(points)
    from cumm import tensorview as tv
    return tv.from_numpy(points)


@with_data("lidar")
@needs_spconv
@pytest.mark.parametrize("kind", ["numpy", "torch", "tensorview"])
@pytest.mark.parametrize("config", [KITTI_GRID, SMALL_CAPS])
@pytest.mark.parametrize("scan", KITTI_SCANS)
def test_point_to_voxel_matches_spconv_on_kitti(scan, config, kind):
    points = read_points(data_path("lidar", scan))
    vsize, prange, max_points, max_voxels = config
    args = (vsize, prange, points.shape[1], max_voxels, max_points)
    expected = run_real(real_generator(3, *args), points)
    got = spconv.utils.Point2VoxelCPU3d(*args).point_to_voxel(as_kind(points, kind))
    assert_same(got, expected)


@with_data("lidar")
@needs_spconv
def test_float64_points_match_spconv():
    """spconv computes the cells of float64 points in double precision (with float32 constants)."""
    points = read_points(data_path("lidar", "kitti_training_000000.bin")).astype(np.float64)
    points[:, :3] += np.random.default_rng(0).uniform(-1e-7, 1e-7, size=(points.shape[0], 3))
    args = (*KITTI_GRID[:2], 4, 40000, 5)
    assert_same(spconv.utils.Point2VoxelCPU3d(*args).point_to_voxel(points),
                run_real(real_generator(3, *args), points))


def boundary_points(ndim, num, seed):
    """Points on and next to the voxel boundaries and range ends of the grid ``voxel_grid(ndim)``, in float32."""
    rng = np.random.default_rng(seed)
    vsize, lo, hi = [0.1, 0.3, 0.05, 0.7][:ndim], [-1.0, 0.2, -0.35, 3.0][:ndim], [1.3, 2.0, 0.4, 5.1][:ndim]
    cols = []
    for v, a, b in zip(vsize, lo, hi):
        on_edges = a + v * rng.integers(-2, int((b - a) / v) + 3, size=num)
        cols.append(np.where(rng.random(num) < 0.5, on_edges, rng.uniform(a - v, b + v, size=num)))
    features = rng.normal(size=(num, 2))
    return np.concatenate([np.stack(cols, axis=1), features], axis=1).astype(np.float32), (vsize, lo + hi)


@needs_spconv
@pytest.mark.parametrize("caps", [(1000, 4), (37, 2)])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_boundary_points_match_spconv_in_every_dimension(ndim, caps):
    points, (vsize, prange) = boundary_points(ndim, 3000, seed=ndim)
    max_voxels, max_points = caps
    args = (vsize, prange, points.shape[1], max_voxels, max_points)
    ours = getattr(spconv.utils, f"Point2VoxelCPU{ndim}d")(*args)
    theirs = real_generator(ndim, *args)
    assert_same(ours.point_to_voxel(points), run_real(theirs, points))
    assert ours.grid_size == list(theirs.grid_size)
    assert type(ours).calc_meta_data(vsize, prange) == type(theirs).calc_meta_data(vsize, prange)


@needs_spconv
def test_clear_voxels_false_keeps_what_an_earlier_call_left():
    first, (vsize, prange) = boundary_points(3, 2000, seed=1)
    second, _ = boundary_points(3, 300, seed=2)
    args = (vsize, prange, first.shape[1], 500, 4)
    ours, theirs = spconv.utils.Point2VoxelCPU3d(*args), real_generator(3, *args)
    assert_same(ours.point_to_voxel(first), run_real(theirs, first))
    assert_same(ours.point_to_voxel(second, clear_voxels=False), run_real(theirs, second, clear_voxels=False))
    assert_same(ours.point_to_voxel(second), run_real(theirs, second))


@needs_spconv
def test_empty_mean_fills_empty_slots_with_each_voxels_mean():
    """Same cells, counts and points as spconv; the empty slots hold the voxel's own mean (spconv's first voxel,
    whose accumulator starts at zero, agrees: later ones carry the previous means, a bug of spconv's)."""
    points, (vsize, prange) = boundary_points(3, 2000, seed=3)
    args = (vsize, prange, points.shape[1], 1000, 5)
    voxels, coords, counts = spconv.utils.Point2VoxelCPU3d(*args).point_to_voxel_empty_mean(points)
    theirs = run_real(real_generator(3, *args), points, "point_to_voxel_empty_mean")
    np.testing.assert_array_equal(coords.numpy(), theirs[1])
    np.testing.assert_array_equal(counts.numpy(), theirs[2])
    np.testing.assert_array_equal(voxels[0].numpy(), theirs[0][0])
    for v in range(coords.shape[0]):
        n = int(counts[v])
        np.testing.assert_array_equal(voxels[v, :n].numpy(), theirs[0][v, :n])
        mean = voxels[v, :n].sum(dim=0) / n
        assert torch.equal(voxels[v, n:], mean.expand(voxels.shape[1] - n, -1))


@needs_spconv
def test_nan_inf_and_empty_points_give_spconvs_result():
    args = ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0, 4.0, 4.0], 4, 10, 3)
    for points in (np.array([[np.nan, 0, 0, 1], [1, 1, 0, 2], [1.5, 1, 0, 3]], np.float32),
                   np.array([[np.inf, 0, 0, 1], [1, -np.inf, 0, 2], [3e38, 1, 1, 1], [1, 1, 0, 2]], np.float32),
                   np.array([[1, 1, np.nan, 1]], np.float32),
                   np.zeros((0, 4), np.float32)):
        assert_same(spconv.utils.Point2VoxelCPU3d(*args).point_to_voxel(points),
                    run_real(real_generator(3, *args), points))


@pytest.mark.parametrize("points,error,match", [
    (np.zeros((5, 3), np.float32), ValueError, r"points must have shape \[N, 4\] .* got \[5, 3\]"),
    (np.zeros((5, 5), np.float32), ValueError, r"points must have shape \[N, 4\] .* got \[5, 5\]"),
    (np.zeros(4, np.float32), ValueError, r"points must have shape \[N, 4\] .* got \[4\]"),
    (np.zeros((5, 4), np.int32), TypeError, "points must be float32 or float64, got int32"),
    (torch.zeros(5, 4, dtype=torch.float16), TypeError, "points must be float32 or float64, got torch.float16"),
    ([[0.0, 0.0, 0.0, 1.0]], TypeError, "points must be a torch tensor, a numpy array or a tensorview"),
])
def test_bad_points_raise_clear_errors(points, error, match):
    """spconv raises a bare RuntimeError (or a pybind TypeError) for these."""
    generator = spconv.utils.Point2VoxelCPU3d([1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0, 4.0, 4.0], 4, 10, 3)
    with pytest.raises(error, match=f"Point2VoxelCPU3d.point_to_voxel: {match}"):
        generator.point_to_voxel(points)


@pytest.mark.parametrize("args,error,match", [
    (([1.0, 1.0], [0, 0, 4, 4], 4, 10, 3), ValueError, r"vsize_xyz must have 3 entries .* use Point2VoxelCPU2d"),
    (([1.0, 1.0, 0.0], [0, 0, 0, 4, 4, 4], 4, 10, 3), ValueError, "vsize_xyz must be 1 to 4 positive finite"),
    (([1.0, 1.0, 1.0], [0, 0, 0, 4, 4], 4, 10, 3), ValueError, "coors_range_xyz must be 6 finite numbers"),
    (([1.0, 1.0, 1.0], [0, 0, 0, 4, -4, 4], 4, 10, 3), ValueError, r"coors_range_xyz \[0, 0, 0, 4, -4, 4\] .* has no cells on axis y"),
    (([1.0, 1.0, 1.0], [0, 0, 0, 4, 4, 4], 2, 10, 3), ValueError, "num_point_features must be an int >= 3, got 2"),
    (([1.0, 1.0, 1.0], [0, 0, 0, 4, 4, 4], 4, 0, 3), ValueError, "max_num_voxels must be an int >= 1, got 0"),
    (([1.0, 1.0, 1.0], [0, 0, 0, 4, 4, 4], 4, 10, 2.5), ValueError, "max_num_points_per_voxel must be an int"),
    (("abc", [0, 0, 0, 4, 4, 4], 4, 10, 3), TypeError, "vsize_xyz must be a sequence of D numbers"),
])
def test_bad_arguments_raise_clear_errors(args, error, match):
    with pytest.raises(error, match=f"Point2VoxelCPU3d: {match}"):
        spconv.utils.Point2VoxelCPU3d(*args)


def test_results_are_not_overwritten_by_the_next_call():
    """spconv's tensorview ``.numpy()`` copies; torch's shares memory, so the results are clones of the buffers."""
    points, (vsize, prange) = boundary_points(3, 500, seed=4)
    generator = spconv.utils.Point2VoxelCPU3d(vsize, prange, points.shape[1], 100, 3)
    voxels, coords, counts = generator.point_to_voxel(points)
    kept = voxels.clone(), coords.clone(), counts.clone()
    generator.point_to_voxel(points[::-1].copy())
    assert all(torch.equal(a, b) for a, b in zip((voxels, coords, counts), kept))
