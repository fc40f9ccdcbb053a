"""pack_keys / unpack_keys: round trip, key order = site order, bounds errors naming the axis."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.hashing import key_radices, pack_keys, unpack_keys
from irregconv.testing import random_coords


@st.composite
def coordinate_sets(draw):
    dims = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=dims, max_size=dims)))
    batch_size = draw(st.integers(1, 3))
    num_sites = draw(st.integers(0, 40))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    coords = random_coords(num_sites, shape, batch_size, generator=torch.Generator().manual_seed(seed))
    return coords, shape, batch_size


@settings(max_examples=50, deadline=None)
@given(coordinate_sets())
def test_pack_unpack_round_trip(case):
    coords, shape, batch_size = case
    keys = pack_keys(coords, shape, batch_size)
    assert keys.dtype == torch.int64 and keys.shape == (coords.size(0),)
    back = unpack_keys(keys, shape)
    assert back.dtype == torch.int32
    torch.testing.assert_close(back, coords.reshape(-1, 1 + len(shape)), rtol=0, atol=0)
    # random_coords sorts by (batch, *spatial): keys must come out strictly increasing
    assert bool((keys.diff() > 0).all())
    if keys.numel():
        assert 0 <= int(keys.min()) and int(keys.max()) < int(torch.tensor((batch_size,) + shape).prod())


@settings(max_examples=50, deadline=None)
@given(coordinate_sets(), st.data())
def test_out_of_range_names_the_axis(case, data):
    coords, shape, batch_size = case
    if coords.size(0) == 0:
        coords = torch.zeros(1, 1 + len(shape), dtype=torch.int32)
    column = data.draw(st.integers(0, len(shape)))
    too_large = data.draw(st.booleans())
    bad = coords.clone()
    row = data.draw(st.integers(0, bad.size(0) - 1))
    limit = batch_size if column == 0 else shape[column - 1]
    bad[row, column] = limit + data.draw(st.integers(0, 5)) if too_large else -data.draw(st.integers(1, 5))
    axis = "batch index (column 0)" if column == 0 else f"spatial axis {column - 1} (column {column})"
    with pytest.raises(ValueError, match=axis.replace("(", r"\(").replace(")", r"\)")) as info:
        pack_keys(bad, shape, batch_size)
    message = str(info.value)
    assert message.startswith("pack_keys:")
    if too_large:
        name = "batch_size" if column == 0 else f"spatial_shape[{column - 1}]"
        assert f"{name} = {limit}" in message
    else:
        assert "negative" in message


def test_key_space_errors():
    with pytest.raises(ValueError, match=r"spatial_shape\[1\] must be positive, got 0"):
        key_radices((3, 0, 2), 1)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        key_radices((3, 3), 0)
    with pytest.raises(ValueError, match=r"more than 2\*\*62"):
        key_radices((2 ** 21, 2 ** 21, 2 ** 21), 2)
    assert key_radices((2 ** 20, 2 ** 21, 2 ** 21), 1) == (1, 2 ** 20, 2 ** 21, 2 ** 21)


def test_bad_coords():
    with pytest.raises(ValueError, match=r"coords must have shape \[N, 4\]"):
        pack_keys(torch.zeros(3, 3, dtype=torch.int32), (4, 4, 4), 1)
    with pytest.raises(TypeError, match="integer tensor, got torch.float32"):
        pack_keys(torch.zeros(3, 4), (4, 4, 4), 1)


def test_large_extents_do_not_overflow():
    shape = (2 ** 20, 2 ** 20, 2 ** 20)
    coords = torch.tensor([[1, 2 ** 20 - 1, 0, 2 ** 20 - 1], [0, 3, 2 ** 20 - 2, 7]], dtype=torch.int64)
    keys = pack_keys(coords, shape, 2)
    assert int(keys[0]) == ((1 * 2 ** 20 + 2 ** 20 - 1) * 2 ** 20 + 0) * 2 ** 20 + 2 ** 20 - 1
    torch.testing.assert_close(unpack_keys(keys, shape).long(), coords, rtol=0, atol=0)


def test_empty():
    keys = pack_keys(torch.zeros(0, 4, dtype=torch.int32), (3, 4, 5), 2)
    assert keys.shape == (0,) and keys.dtype == torch.int64
    assert unpack_keys(keys, (3, 4, 5)).shape == (0, 4)
