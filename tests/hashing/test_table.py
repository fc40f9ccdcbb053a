"""HashTable: round trip, misses, neighbour lookups, and agreement of the torch, native and numba backends."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.hashing import HashTable, available_backends, pack_keys
from irregconv.testing import DEVICES, random_coords
from irregconv._numba import available_cpu_kernels

BACKENDS = available_backends()


@st.composite
def key_sets(draw):
    num_keys = draw(st.integers(0, 60))
    keys = draw(st.lists(st.integers(0, 2 ** 62 - 1), min_size=num_keys, max_size=num_keys, unique=True))
    extra = draw(st.lists(st.integers(-2 ** 62, 2 ** 62 - 1), max_size=40))
    return torch.tensor(keys, dtype=torch.int64), torch.tensor(extra, dtype=torch.int64)


def _naive_lookup(keys, query):
    row = {k: i for i, k in enumerate(keys.tolist())}
    return torch.tensor([row.get(q, -1) for q in query.reshape(-1).tolist()], dtype=torch.int64).reshape(query.shape)


@settings(max_examples=60, deadline=None)
@given(key_sets())
def test_round_trip_and_misses(case):
    keys, extra = case
    query = torch.cat([keys, extra, keys.flip(0)])
    expected = _naive_lookup(keys, query)
    for backend in BACKENDS:
        table = HashTable(keys, backend=backend)
        assert table.backend == backend
        torch.testing.assert_close(table.lookup(keys), torch.arange(keys.numel()), rtol=0, atol=0)
        torch.testing.assert_close(table.lookup(query), expected, rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lookup_keeps_query_shape_and_negative_queries_miss(backend):
    keys = torch.tensor([5, 0, 17, 3])
    table = HashTable(keys, backend=backend)
    query = torch.tensor([[17, -1, 0], [4, 3, -17]])
    torch.testing.assert_close(table.lookup(query), torch.tensor([[2, -1, 1], [-1, 3, -1]]), rtol=0, atol=0)
    assert table.lookup(torch.zeros(0, dtype=torch.long)).shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_table(backend):
    table = HashTable(torch.zeros(0, dtype=torch.long), backend=backend)
    torch.testing.assert_close(table.lookup(torch.tensor([0, 1, -1])), torch.full((3,), -1), rtol=0, atol=0)
    coords = torch.zeros(0, 4, dtype=torch.int32)
    out = table.lookup_neighbors(coords, torch.zeros(3, 3, dtype=torch.long), (4, 4, 4), 1)
    assert out.shape == (3, 0) and out.dtype == torch.int64


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_key_names_the_row(backend):
    with pytest.raises(ValueError, match=r"HashTable: keys has a duplicate at row 3 \(key 7\)"):
        HashTable(torch.tensor([7, 1, 2, 7, 9]), backend=backend)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_backend_on_device(device):
    gen = torch.Generator().manual_seed(3)
    coords = random_coords(40, (5, 6, 7), 2, gen)
    keys = pack_keys(coords, (5, 6, 7), 2)
    table = HashTable(keys.to(device))
    if device != "cpu":
        assert table.backend == "torch"  # "auto" picks the reference off the CPU
    query = torch.cat([keys, torch.randint(-5, 5 * 6 * 7 * 2, (50,), generator=gen)])
    torch.testing.assert_close(table.lookup(query.to(device)).cpu(), _naive_lookup(keys, query), rtol=0, atol=0)
    disp = torch.tensor([[0, 0, 1], [-1, 2, 0], [0, 0, 0]])
    got = table.lookup_neighbors(coords.to(device), disp, (5, 6, 7), 2)
    torch.testing.assert_close(got.cpu(), _naive_neighbors(coords, disp, (5, 6, 7), 2), rtol=0, atol=0)


def test_backend_errors_and_choice():
    with pytest.raises(ValueError, match="HashTable: backend must be one of 'auto', 'torch', 'native', 'numba', got "
                                         "'cuda'"):
        HashTable(torch.tensor([1]), backend="cuda")
    for backend in ("native", "numba"):
        with pytest.raises(ValueError, match=f"backend '{backend}' needs CPU keys"):
            HashTable(torch.tensor([1], device="meta"), backend=backend)
    assert BACKENDS[0] == "torch"
    assert HashTable(torch.tensor([1])).backend == available_cpu_kernels()[0]
    assert BACKENDS == ["torch"] + [path for path in available_cpu_kernels() if path != "torch"]


def _naive_neighbors(coords, displacements, shape, batch_size):
    sites = {tuple(c): i for i, c in enumerate(coords.tolist())}
    out = torch.full((displacements.size(0), coords.size(0)), -1, dtype=torch.long)
    for k, d in enumerate(displacements.tolist()):
        for i, c in enumerate(coords.tolist()):
            moved = (c[0],) + tuple(x + dx for x, dx in zip(c[1:], d))
            out[k, i] = sites.get(moved, -1)
    return out


@st.composite
def neighbour_cases(draw):
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=dims, max_size=dims)))
    batch_size = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    coords = random_coords(draw(st.integers(0, 30)), shape, batch_size, torch.Generator().manual_seed(seed))
    disp = draw(st.lists(st.lists(st.integers(-8, 8), min_size=dims, max_size=dims), min_size=1, max_size=9))
    return coords, torch.tensor(disp, dtype=torch.long), shape, batch_size


@settings(max_examples=60, deadline=None)
@given(neighbour_cases())
def test_lookup_neighbors_matches_naive(case):
    coords, disp, shape, batch_size = case
    expected = _naive_neighbors(coords, disp, shape, batch_size)
    keys = pack_keys(coords, shape, batch_size)
    for backend in BACKENDS:
        table = HashTable(keys, backend=backend)
        for dtype in (torch.int32, torch.int64):
            got = table.lookup_neighbors(coords.to(dtype), disp, shape, batch_size)
            torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=lambda m, b=backend: f"{b}: {m}")
