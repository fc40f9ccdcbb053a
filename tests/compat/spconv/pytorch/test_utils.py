"""spconv.pytorch.utils: PointToVoxel against spconv 2.3.8's (voxels, cells, counts and per-point voxel ids, bit for
bit) and gather_features_by_pc_voxel_id against spconv's and a gather oracle (values and gradients)."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.data import read_points
from irregconv.testing import data_path, with_data, with_package

needs_spconv = with_package("spconv")
KITTI_GRID = ([0.05, 0.05, 0.1], [0.0, -40.0, -3.0, 70.4, 40.0, 1.0])


def real_point_to_voxel(*args):
    from spconv.pytorch.utils import PointToVoxel
    return PointToVoxel(*args)


def grid_points(num, seed, dtype=torch.float32):
    """Points on and around the voxel boundaries of a 0.25 m grid over [-1, 1] x [0, 2] x [-0.5, 0.5]."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor([-1.0, 0.0, -0.5]), torch.tensor([1.0, 2.0, 0.5])
    edges = lo + 0.25 * torch.randint(-1, 10, (num, 3), generator=gen)
    anywhere = lo - 0.3 + (hi - lo + 0.6) * torch.rand(num, 3, generator=gen)
    xyz = torch.where(torch.rand(num, 1, generator=gen) < 0.5, edges, anywhere)
    return torch.cat([xyz, torch.randn(num, 1, generator=gen)], dim=1).to(dtype)


GRID = ([0.25, 0.25, 0.25], [-1.0, 0.0, -0.5, 1.0, 2.0, 0.5])


@with_data("lidar")
@needs_spconv
@pytest.mark.parametrize("caps", [(40000, 5), (3000, 2)])
def test_generate_voxel_with_id_matches_spconv_on_kitti(caps):
    points = torch.from_numpy(read_points(data_path("lidar", "kitti_training_000000.bin")))
    args = (*KITTI_GRID, 4, *caps)
    expected = real_point_to_voxel(*args).generate_voxel_with_id(points)
    got = spconv.pytorch.utils.PointToVoxel(*args).generate_voxel_with_id(points)
    for ours, theirs in zip(got, expected):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)


@needs_spconv
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_call_and_buffers_match_spconv(dtype):
    points = grid_points(2000, seed=0, dtype=dtype)
    ours, theirs = spconv.pytorch.utils.PointToVoxel(*GRID, 4, 100, 3), real_point_to_voxel(*GRID, 4, 100, 3)
    for got, expected in zip(ours(points), theirs(points)):
        assert torch.equal(got, expected)
    assert torch.equal(ours.voxels, theirs.voxels) and torch.equal(ours.indices, theirs.indices)
    assert (ours.vsize, ours.grid_size, ours.grid_stride, ours.coors_range) == \
        (list(theirs.vsize), list(theirs.grid_size), list(theirs.grid_stride), list(theirs.coors_range))
    fewer = grid_points(50, seed=1, dtype=dtype)
    for got, expected in zip(ours(fewer, clear_voxels=False), theirs(fewer, clear_voxels=False)):
        assert torch.equal(got, expected)


@needs_spconv
def test_empty_mean_gives_each_voxel_its_own_mean():
    points = grid_points(3000, seed=2)
    voxels, coords, counts, ids = spconv.pytorch.utils.PointToVoxel(*GRID, 4, 200, 6).generate_voxel_with_id(
        points, empty_mean=True)
    theirs = real_point_to_voxel(*GRID, 4, 200, 6).generate_voxel_with_id(points, empty_mean=True)
    assert torch.equal(coords, theirs[1]) and torch.equal(counts, theirs[2]) and torch.equal(ids, theirs[3])
    assert torch.equal(voxels[0], theirs[0][0])  # spconv's accumulator is right for its first voxel only
    for v in range(coords.size(0)):
        n = int(counts[v])
        members = points[ids == v][:n]
        assert torch.equal(voxels[v, :n], members)
        assert torch.equal(voxels[v, n:], (voxels[v, :n].sum(0) / n).expand(voxels.size(1) - n, -1))


def test_dropped_points_have_id_minus_one_and_capped_points_keep_their_voxel():
    points = torch.tensor([[0.1, 0.1, 0.1, 1.0], [0.2, 0.1, 0.1, 2.0], [0.15, 0.1, 0.1, 3.0], [5.0, 0.1, 0.1, 4.0],
                           [float("nan"), 0.1, 0.1, 5.0], [0.6, 0.1, 0.1, 6.0], [0.9, 0.1, 0.1, 7.0]])
    generator = spconv.pytorch.utils.PointToVoxel([0.5, 0.5, 0.5], [0, 0, 0, 2, 2, 2], 4, 1, 2)
    voxels, coords, counts, ids = generator.generate_voxel_with_id(points)
    assert coords.tolist() == [[0, 0, 0]] and counts.tolist() == [2]
    assert ids.tolist() == [0, 0, 0, -1, -1, -1, -1]  # the third point exceeds the cap but lies in voxel 0
    assert voxels[0, :, 3].tolist() == [1.0, 2.0]


@needs_spconv
@pytest.mark.parametrize("invalid_value", [0, -7.5])
def test_gather_features_by_pc_voxel_id_matches_spconv(invalid_value):
    from spconv.pytorch.utils import gather_features_by_pc_voxel_id as theirs
    points = grid_points(500, seed=3)
    _, _, _, ids = spconv.pytorch.utils.PointToVoxel(*GRID, 4, 40, 3).generate_voxel_with_id(points)
    assert (ids == -1).any() and (ids >= 0).any()
    per_voxel = torch.randn(int(ids.max()) + 1, 3, 2, dtype=torch.float64, requires_grad=True)
    got = spconv.pytorch.utils.gather_features_by_pc_voxel_id(per_voxel, ids, invalid_value)
    assert torch.equal(got, theirs(per_voxel.detach(), ids, invalid_value))
    weights = torch.randn_like(got)
    (got * weights).sum().backward()
    expected_grad = torch.zeros_like(per_voxel).index_add_(0, ids[ids >= 0], weights[ids >= 0])
    assert torch.equal(per_voxel.grad, expected_grad)


def test_bad_input_raises_clear_errors():
    generator = spconv.pytorch.utils.PointToVoxel(*GRID, 4, 10, 2)
    with pytest.raises(ValueError, match=r"PointToVoxel.generate_voxel_with_id: points must have shape \[N, 4\]"):
        generator(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="PointToVoxel.generate_voxel_with_id: points must be float32 or float64"):
        generator(torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="PointToVoxel.generate_voxel_with_id: pc is on meta but this generator was "
                                         "built for cpu"):
        generator(torch.zeros(3, 4, device="meta"))
    with pytest.raises(ValueError, match="PointToVoxel: max_num_voxels must be an int >= 1, got -1"):
        spconv.pytorch.utils.PointToVoxel(*GRID, 4, -1, 2)
    ids = torch.tensor([0, -1, 3])
    with pytest.raises(ValueError, match=r"gather_features_by_pc_voxel_id: pc_voxel_id holds -1..3, but the ids "
                                         r"must be -1 or rows of seg_res_features \(0..1\)"):
        spconv.pytorch.utils.gather_features_by_pc_voxel_id(torch.zeros(2, 3), ids)
    with pytest.raises(TypeError, match="gather_features_by_pc_voxel_id: pc_voxel_id must be an integer tensor"):
        spconv.pytorch.utils.gather_features_by_pc_voxel_id(torch.zeros(2, 3), ids.float())
