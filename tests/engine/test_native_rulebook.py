"""The native rulebook kernels (irregconv/engine/backends/native/rulebook.py) against their numba originals: the same
bits on random inputs for 1 and 2 threads, and a ValueError (never a foreign read) for every index out of range."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine.backends import native
from irregconv.rulebook import KernelRegion
from irregconv.rulebook.strided import _axis_taps
from irregconv.testing import random_coords, threads

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="needs package irregconv's native extension")
numba_kernels = pytest.importorskip("irregconv.rulebook._numba_kernels", reason="needs package numba")
kernels = pytest.importorskip("irregconv.engine.backends.native.rulebook")


def assert_bits(got, want):
    """Native results (tensors, bools, ints) equal the numba kernel's (numpy arrays, bools, ints) bit for bit."""
    for a, b in zip(got, want):
        if isinstance(a, torch.Tensor):
            b = torch.from_numpy(np.asarray(b))
            assert a.dtype == b.dtype and torch.equal(a, b)
        else:
            assert bool(a) == bool(b)


def on_threads(run):
    """``run()`` on 1 and 2 threads; both results."""
    results = []
    for count in (1, 2):
        with threads(count):
            results.append(run())
    return results


def neighbor_map(gen, num_k, num_out, num_in, dtype):
    values = torch.randint(0, max(num_in, 1), (num_k, num_out), generator=gen)
    return torch.where(torch.rand(num_k, num_out, generator=gen) < 0.3, values, -1).to(dtype)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 5), st.integers(0, 50), st.integers(0, 2 ** 31 - 1), st.sampled_from([torch.int32, torch.int64]))
def test_compact_neighbors(num_k, num_out, seed, dtype):
    neighbors = neighbor_map(torch.Generator().manual_seed(seed), num_k, num_out, 20, dtype)
    want = numba_kernels.compact_neighbors(neighbors.numpy())
    for got in on_threads(lambda: kernels.compact_neighbors(neighbors, 20)):
        assert_bits(got, want)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(0, 60), st.integers(0, 2 ** 31 - 1), st.booleans(), st.integers(1, 3))
def test_candidate_pairs(dims, num_sites, seed, transposed, stride):
    shape = (7,) * dims
    coords = random_coords(num_sites, shape, 2, generator=torch.Generator().manual_seed(seed))
    region = KernelRegion.cube(3, dims)
    geometry = [(stride,) * dims, (1,) * dims, (1,) * dims, (7 * stride if transposed else 7,) * dims]
    arrays = [torch.from_numpy(a) for a in _axis_taps(region)]
    want = numba_kernels.candidate_pairs(coords.numpy(), *(a.numpy() for a in arrays),
                                         *(np.asarray(v, dtype=np.int64) for v in geometry), transposed,
                                         region.volume, 5)
    for got in on_threads(lambda: kernels.candidate_pairs(coords, *arrays, *geometry, transposed, region.volume, 5)):
        assert_bits(got, want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.integers(1, 2 ** 40), st.integers(0, 2 ** 31 - 1))
def test_sorting_ranking_and_filling_new_sites(num_keys, key_bound, seed):
    gen = torch.Generator().manual_seed(seed)
    # two offsets' candidates, each reaching an output at most once, in any order (keys repeat across offsets)
    runs = [torch.unique(torch.randint(0, key_bound, (n,), generator=gen)) for n in (num_keys // 3, num_keys)]
    keys = torch.cat([run[torch.randperm(run.numel(), generator=gen)] for run in runs])
    counts = torch.tensor([run.numel() for run in runs])
    sorted_keys, order = kernels.argsort_keys(keys, key_bound)
    assert_bits((sorted_keys, order), numba_kernels.argsort_keys(keys.numpy(), key_bound))
    rank, unique = kernels.rank_sorted(sorted_keys)
    assert_bits((rank, unique), numba_kernels.rank_sorted(sorted_keys.numpy()))
    want = numba_kernels.candidate_outputs(rank.numpy(), order.numpy(), counts.numpy())
    for got in on_threads(lambda: kernels.candidate_outputs(rank, order, counts)):
        assert_bits(got, want)
    offsets = torch.repeat_interleave(torch.arange(2), counts)
    inputs = torch.randint(0, 1000, (keys.numel(),), generator=gen)
    want = torch.empty(2, unique.numel(), dtype=torch.int32)
    numba_kernels.fill_new_neighbors(rank.numpy(), order.numpy(), offsets.numpy(), inputs.numpy(), want.numpy())
    for got in on_threads(lambda: kernels.fill_new_neighbors(rank, order, offsets, inputs, torch.empty_like(want))):
        assert torch.equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 200), st.integers(1, 4), st.integers(1, 30), st.integers(1, 30), st.integers(0, 2 ** 31 - 1))
def test_sort_pairs(num_pairs, num_k, num_in, num_out, seed):
    gen = torch.Generator().manual_seed(seed)
    offset, out_idx, in_idx = (torch.randint(0, n, (num_pairs,), generator=gen) for n in (num_k, num_out, num_in))
    order, valid = numba_kernels.sort_pairs(offset.numpy(), out_idx.numpy(), in_idx.numpy(), num_k, num_out, num_in)
    assert valid
    assert torch.equal(kernels.sort_pairs(offset, out_idx, in_idx, num_k, num_out, num_in), torch.from_numpy(order))


def test_merge_neighbors_matches_numba():
    gen = torch.Generator().manual_seed(3)
    coords = random_coords(80, (6, 7, 5), 2, generator=gen)
    radices = (2, 6, 7, 5)
    keys = ((coords[:, 0].long() * 6 + coords[:, 1]) * 7 + coords[:, 2]) * 5 + coords[:, 3]
    sorted_keys, order = torch.sort(keys)
    region = KernelRegion.cube(3, 3)
    disp, mirror = region.displacements((1, 1, 1)), region.mirror()
    half = torch.tensor([k for k in range(region.volume) if k < int(mirror[k])])
    want = torch.full((region.volume, coords.size(0)), 7, dtype=torch.int32)
    numba_kernels.merge_neighbors(sorted_keys.numpy(), order.numpy(), coords.numpy(), disp.numpy(),
                                  np.asarray(radices), half.numpy(), mirror[half].numpy(), want.numpy())
    for count in (1, 2):
        with threads(count):
            got = kernels.merge_neighbors(sorted_keys, order, coords, disp, radices, half, mirror[half],
                                          torch.full_like(want, 7))
        assert torch.equal(got, want)


def test_indices_out_of_range_raise():
    neighbors = torch.tensor([[0, -1, 5]])
    with pytest.raises(ValueError, match="below num_in = 5"):
        kernels.compact_neighbors(neighbors, 5)
    with pytest.raises(ValueError, match="every pair needs an input row in"):
        kernels.sort_pairs(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 9]), 2, 2, 2)
    with pytest.raises(ValueError, match="every key must lie in"):
        kernels.argsort_keys(torch.tensor([3, -1]), 10)
    with pytest.raises(ValueError, match="order must hold positions"):
        kernels.candidate_outputs(torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([2]))
    with pytest.raises(ValueError, match="counts"):
        kernels.candidate_outputs(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([3]))
    map_ = torch.empty(2, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="pair_offset rows of neighbors"):
        kernels.fill_new_neighbors(torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 1]),
                                   torch.tensor([4, 5]), map_)
    with pytest.raises(ValueError, match="pair_offset rows of neighbors"):
        kernels.fill_new_neighbors(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 2]),
                                   torch.tensor([4, 5]), map_)
    coords = torch.tensor([[0, 0], [0, 1]], dtype=torch.int32)
    disp = torch.tensor([[-1], [0], [1]])
    args = (torch.tensor([0, 1]), coords, disp, (1, 2))
    with pytest.raises(ValueError, match="order must hold rows"):
        kernels.merge_neighbors(torch.tensor([0, 1]), torch.tensor([0, 2]), *args[1:], torch.tensor([0]),
                                torch.tensor([2]), torch.empty(3, 2, dtype=torch.int32))
    for half, mirrored in (([0], [3]), ([0], [0]), ([-1], [2])):
        with pytest.raises(ValueError, match="half and mirrored must name distinct rows"):
            kernels.merge_neighbors(torch.tensor([0, 1]), *args, torch.tensor(half), torch.tensor(mirrored),
                                    torch.empty(3, 2, dtype=torch.int32))
    tap_of, axis_taps, axis_counts = (torch.from_numpy(a) for a in _axis_taps(KernelRegion.cube(3, 1)))
    geometry = ((2,), (1,), (1,), (4,), False)
    with pytest.raises(ValueError, match="tap_of entry below num_k"):
        kernels.candidate_pairs(coords, tap_of + 5, axis_taps, axis_counts, *geometry, 3, 2)
    with pytest.raises(ValueError, match="axis_counts must lie in"):
        kernels.candidate_pairs(coords, tap_of, axis_taps, axis_counts + 1, *geometry, 3, 2)
    with pytest.raises(ValueError, match="strides >= 1"):
        kernels.candidate_pairs(coords, tap_of, axis_taps, axis_counts, (0,), *geometry[1:], 3, 2)
    with pytest.raises(TypeError, match="coords must be an int32 or int64 tensor"):
        kernels.candidate_pairs(coords.float(), tap_of, axis_taps, axis_counts, *geometry, 3, 2)
