"""The rulebook builders on each CPU kernel path (native, numba, pure torch): the same rulebooks and output sites bit
for bit, on 1 and 2 threads, on random sites (sorted or not, every builder kind) and on a real KITTI scan."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.data import read_points, voxelize
from irregconv.rulebook import (KernelRegion, build_graph_rulebook, build_strided_rulebook, build_subm_rulebook,
                                build_transposed_rulebook)
from irregconv.testing import data_path, random_coords, random_graph, threads, with_data
from irregconv.testing.oracles import cpu_kernel_paths

PATHS = ("native", "numba", "torch")


def _tensors(result):
    """A builder's result as tensors: the rulebook's pairs and CSR (and its transpose's), and the output sites."""
    rulebook, sites = result if isinstance(result, tuple) else (result, None)
    transpose = rulebook.transpose()
    tensors = [rulebook.in_idx, rulebook.out_idx, rulebook.offset_ptr, transpose.in_idx, transpose.out_idx,
               transpose.offset_ptr]
    return tensors + ([] if sites is None else [sites]) + ([] if rulebook.pair_ids is None else [rulebook.pair_ids])


def assert_same_on_every_path(build):
    """``build()`` on every kernel path and thread count gives the tensors of the numba kernels on one thread."""
    results = {}
    for path in PATHS:
        for count in (1, 2):
            with cpu_kernel_paths(path), threads(count):
                results[path, count] = _tensors(build())
    expected = results["numba", 1]
    for key, got in results.items():
        assert len(got) == len(expected), key
        for i, (a, b) in enumerate(zip(got, expected)):
            assert a.dtype == b.dtype and torch.equal(a, b), f"{key}: tensor {i} differs"


@st.composite
def site_cases(draw):
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(2, 9), min_size=dims, max_size=dims)))
    batch_size = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    gen = torch.Generator().manual_seed(seed)
    coords = random_coords(draw(st.integers(0, 60)), shape, batch_size, generator=gen)
    if draw(st.booleans()):  # sites in any order: the strided builder's neighbour-map path
        coords = coords[torch.randperm(coords.size(0), generator=gen)]
    if draw(st.booleans()):
        coords = coords.long()
    kernel_size = draw(st.sampled_from([1, 2, 3]))
    region = draw(st.sampled_from([KernelRegion.cube, KernelRegion.cross]))(kernel_size, dims)
    return coords, shape, batch_size, region


@settings(max_examples=40, deadline=None)
@given(site_cases(), st.integers(1, 3))
def test_every_convolution_builder_gives_the_same_bits_on_every_path(case, stride):
    coords, shape, batch_size, region = case
    dims = len(shape)
    ones = (1,) * dims
    assert_same_on_every_path(lambda: build_subm_rulebook(coords, shape, batch_size, region, ones))
    assert_same_on_every_path(lambda: build_subm_rulebook(coords, shape, batch_size, region, (2,) * dims))
    strides, pads = (stride,) * dims, tuple(k // 2 for k in region.kernel_size)
    if all(s + 2 * p >= k for s, p, k in zip(shape, pads, region.kernel_size)):
        assert_same_on_every_path(lambda: build_strided_rulebook(coords, shape, batch_size, region, strides, pads,
                                                                 ones))
    assert_same_on_every_path(lambda: build_transposed_rulebook(coords, shape, batch_size, region, strides, pads,
                                                                ones, (stride - 1,) * dims))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(0, 200), st.integers(0, 2 ** 31 - 1))
def test_graph_rulebooks_give_the_same_bits_on_every_path(num_nodes, num_edges, seed):
    edges = (random_graph(num_nodes, num_edges, torch.Generator().manual_seed(seed), allow_self_loops=True)
             if num_nodes else torch.zeros(2, 0, dtype=torch.long))
    assert_same_on_every_path(lambda: build_graph_rulebook(edges, num_nodes))


@with_data("lidar", "kitti_training_000000.bin")
@pytest.mark.parametrize("kind", ["subm", "strided", "transposed"])
def test_kitti_rulebooks_give_the_same_bits_on_every_path(kind):
    voxels = voxelize(read_points(data_path("lidar", "kitti_training_000000.bin")), (0.05, 0.05, 0.1),
                      (0.0, -40.0, -3.0, 70.4, 40.0, 1.0))
    coords, shape = voxels.coords, voxels.spatial_shape
    region = KernelRegion.cube(3, 3)
    if kind == "subm":
        assert_same_on_every_path(lambda: build_subm_rulebook(coords, shape, 1, region, (1, 1, 1)))
    elif kind == "strided":
        assert_same_on_every_path(lambda: build_strided_rulebook(coords, shape, 1, region, (2, 2, 2), (1, 1, 1),
                                                                 (1, 1, 1)))
    else:
        assert_same_on_every_path(lambda: build_transposed_rulebook(coords[:5000], shape, 1, region, (2, 2, 2),
                                                                    (1, 1, 1), (1, 1, 1), (1, 1, 1)))
