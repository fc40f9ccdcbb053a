"""The native hash-table kernels (irregconv/engine/backends/native/hashing.py) against their numba originals: the same
tables and lookups bit for bit on random keys for 1 and 2 threads, on a KITTI scan's sites, and errors for bad
keys, capacities and shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.data import read_points, voxelize
from irregconv.engine.backends import native
from irregconv.hashing import key_radices, pack_keys
from irregconv.rulebook import KernelRegion
from irregconv.testing import data_path, threads, with_data

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="needs package irregconv's native extension")
numba_kernels = pytest.importorskip("irregconv.hashing._numba_kernels", reason="needs package numba")
kernels = pytest.importorskip("irregconv.engine.backends.native.hashing")


def capacity_for(num_keys):
    return 1 << max(4, (2 * max(num_keys, 1) - 1).bit_length())


def assert_native_equals_numba(keys, query, coords, displacements, radices):
    """Table, lookups, neighbour lookups and unpacked keys: native (1 and 2 threads) == numba, bit for bit."""
    capacity = capacity_for(keys.numel())
    slots_key, slots_val, duplicate = kernels.build(keys, capacity)
    want_key, want_val, want_duplicate = numba_kernels.build(keys.numpy(), capacity)
    assert duplicate == want_duplicate
    if duplicate >= 0:
        return
    assert torch.equal(slots_key, torch.from_numpy(want_key)) and torch.equal(slots_val, torch.from_numpy(want_val))
    expected = [numba_kernels.lookup(want_key, want_val, query.numpy()),
                numba_kernels.lookup_neighbors(want_key, want_val, coords.numpy(), displacements.numpy(),
                                               np.asarray(radices)),
                numba_kernels.unpack(keys.numpy(), np.asarray(radices[1:]))]
    for count in (1, 2):
        with threads(count):
            got = [kernels.lookup(slots_key, slots_val, query),
                   kernels.lookup_neighbors(slots_key, slots_val, coords, displacements, radices),
                   kernels.unpack(keys, radices[1:])]
        for a, b in zip(got, expected):
            b = torch.from_numpy(b)
            assert a.dtype == b.dtype and torch.equal(a, b)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 80), st.integers(0, 2 ** 31 - 1), st.booleans(), st.booleans())
def test_random_keys(num_sites, seed, repeat, coords64):
    gen = torch.Generator().manual_seed(seed)
    radices = (2, 5, 6, 7)
    keys = torch.randperm(2 * 5 * 6 * 7, generator=gen)[:num_sites]
    if repeat and num_sites > 1:
        keys[-1] = keys[0]
    coords = torch.stack([keys // 210, keys // 42 % 5, keys // 7 % 6, keys % 7], dim=1).to(torch.int32)
    coords = coords.long() if coords64 else coords
    query = torch.cat([keys, torch.randint(-50, 500, (30,), generator=gen)])
    displacements = KernelRegion.cube(3, 3).displacements((1, 2, 1))
    assert_native_equals_numba(keys, query, coords, displacements, radices)


@with_data("lidar", "kitti_training_000000.bin")
def test_kitti_scan():
    voxels = voxelize(read_points(data_path("lidar", "kitti_training_000000.bin")), (0.05, 0.05, 0.1),
                      (0.0, -40.0, -3.0, 70.4, 40.0, 1.0))
    radices = key_radices(voxels.spatial_shape, 1)
    keys = pack_keys(voxels.coords, voxels.spatial_shape, 1)
    assert_native_equals_numba(keys, keys.flip(0) + 1, voxels.coords, KernelRegion.cube(3, 3).displacements((1, 1, 1)),
                               radices)


def test_bad_keys_capacities_and_tables_raise():
    with pytest.raises(ValueError, match="keys must be non-negative, got -4 at row 1"):
        kernels.build(torch.tensor([3, -4]), 16)
    for capacity in (2, 12):
        with pytest.raises(ValueError, match="capacity must be a power of two above the 2 keys"):
            kernels.build(torch.tensor([3, 4]), capacity)
    slots_key, slots_val, _ = kernels.build(torch.tensor([3, 4]), 16)
    with pytest.raises(ValueError, match="power of two"):
        kernels.lookup(slots_key[:12], slots_val[:12], torch.tensor([3]))
    with pytest.raises(ValueError, match="slots_val must have 16 entries"):
        kernels.lookup(slots_key, slots_val[:8], torch.tensor([3]))
    with pytest.raises(TypeError, match="query must be torch.int64"):
        kernels.lookup(slots_key, slots_val, torch.tensor([3.0]))
    # a full table (no empty slot) ends every probe after one round
    full = torch.arange(16)
    assert torch.equal(kernels.lookup(full, full, torch.tensor([99, 5])), torch.tensor([-1, 5]))
    with pytest.raises(ValueError, match="radices must have 3 entries"):
        kernels.lookup_neighbors(slots_key, slots_val, torch.zeros(2, 3, dtype=torch.int32),
                                 torch.zeros(1, 2, dtype=torch.int64), (1, 4))
    with pytest.raises(ValueError, match="displacements must have shape"):
        kernels.lookup_neighbors(slots_key, slots_val, torch.zeros(2, 3, dtype=torch.int32),
                                 torch.zeros(1, 3, dtype=torch.int64), (1, 4, 4))
    with pytest.raises(ValueError, match="every extent of spatial_shape must be positive"):
        kernels.unpack(torch.tensor([3]), (4, 0))
