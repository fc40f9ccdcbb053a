"""The native plain row kernels (irregconv/engine/backends/native/rows.py) against their numba originals: the same
bits for float32 and float64 rows on 1 and 2 threads, and rows outside ``out`` / broken CSR entries reported."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine.backends import native
from irregconv.testing import threads

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="needs package irregconv's native extension")
numba_kernels = pytest.importorskip("irregconv.engine.backends._numba_kernels", reason="needs package numba")
kernels = pytest.importorskip("irregconv.engine.backends.native.rows")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(0, 200), st.integers(1, 20), st.integers(0, 2 ** 31 - 1),
       st.sampled_from([torch.float32, torch.float64]))
def test_scatter_add_owned(num_rows, num_pairs, channels, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(-2, num_rows + 2, (num_pairs,), generator=gen)
    src = torch.randn(num_pairs, channels, generator=gen, dtype=dtype)
    start = torch.randn(num_rows, channels, generator=gen, dtype=dtype)
    want = start.clone()
    want_outside = numba_kernels.scatter_add_owned(want.numpy(), idx.numpy(), src.numpy(), 3)
    for count in (1, 2):
        with threads(count):
            got = start.clone()
            assert kernels.scatter_add_owned(got, idx, src) == want_outside
        assert torch.equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(1, 20), st.integers(0, 2 ** 31 - 1),
       st.sampled_from([torch.float32, torch.float64]), st.booleans())
def test_csr_rows_add(num_rows, channels, seed, dtype, broken):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 6, (num_rows,), generator=gen)
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    col = torch.randint(0, 9, (int(crow[-1]),), generator=gen)
    if broken and col.numel():
        col[-1] = 9  # one column outside src
    values = torch.randn(col.numel(), generator=gen, dtype=dtype)
    src = torch.randn(9, channels, generator=gen, dtype=dtype)
    start = torch.randn(num_rows, channels, generator=gen, dtype=dtype)
    want = start.clone()
    want_valid = numba_kernels.csr_rows_add(want.numpy(), crow.numpy(), col.numpy(), values.numpy(), src.numpy())
    for count in (1, 2):
        with threads(count):
            got = start.clone()
            assert kernels.csr_rows_add(got, crow, col, values, src) == want_valid
        assert torch.equal(got, want)


def test_wrong_buffers_raise():
    with pytest.raises(TypeError, match="out must be a float32 or float64 tensor"):
        kernels.scatter_add_owned(torch.zeros(3, 2, dtype=torch.bfloat16), torch.tensor([0]), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="src must be torch.float64"):
        kernels.scatter_add_owned(torch.zeros(3, 2, dtype=torch.float64), torch.tensor([0]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="src must have shape"):
        kernels.scatter_add_owned(torch.zeros(3, 2), torch.tensor([0, 1]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="crow must have 4 entries"):
        kernels.csr_rows_add(torch.zeros(3, 2), torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1),
                             torch.zeros(2, 2))
    assert not kernels.csr_rows_add(torch.zeros(1, 2), torch.tensor([0, 5]), torch.tensor([0]), torch.ones(1),
                                    torch.zeros(2, 2))
