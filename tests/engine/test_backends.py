"""The CPU row kernels (native and numba) against their torch fallbacks (the paths CUDA takes) and each other,
chunking, and the workspace's buffer reuse."""
import importlib

import pytest
import torch

from irregconv.engine import gather_scatter
from irregconv import workspace
from irregconv.engine.backends import csr_rows_add, rows, scatter_add_rows
from irregconv.testing import RULEBOOK_KINDS
from irregconv.testing.oracles import cpu_kernel_paths, random_rulebook


def test_scatter_add_rows_sums_repeats_in_pair_order():
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 7, (300,), generator=gen)
    src = torch.randn(300, 5, dtype=torch.float64, generator=gen)
    out = scatter_add_rows(torch.zeros(7, 5, dtype=torch.float64), idx, src, [])
    expected = torch.zeros(7, 5, dtype=torch.float64)
    for p in range(300):  # the naive loop, in pair order
        expected[idx[p]] += src[p]
    assert torch.equal(out, expected)


def test_csr_rows_add_matches_torch_sparse_product():
    gen = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 5, (9,), generator=gen)
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    col = torch.randint(0, 6, (int(crow[-1]),), generator=gen)
    values = torch.randn(col.numel(), dtype=torch.float64, generator=gen)
    src = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    dense = torch.sparse_csr_tensor(crow, col, values, (9, 6)).to_dense()
    torch.testing.assert_close(csr_rows_add(torch.zeros(9, 4, dtype=torch.float64), crow, col, values, src),
                               dense @ src, rtol=1e-12, atol=1e-12)
    ones = torch.sparse_csr_tensor(crow, col, torch.ones_like(values), (9, 6)).to_dense()
    torch.testing.assert_close(csr_rows_add(torch.zeros(9, 4, dtype=torch.float64), crow, col, None, src),
                               ones @ src, rtol=1e-12, atol=1e-12)


def _outputs_and_grads(rulebook, seed, scaled):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(rulebook.num_in, 3, dtype=torch.float64, generator=gen).requires_grad_()
    weight = torch.randn(rulebook.kernel_volume, 3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    scale = torch.randn(rulebook.num_pairs, dtype=torch.float64, generator=gen).requires_grad_() if scaled else None
    out = gather_scatter(feats, weight, rulebook, scale)
    leaves = [feats, weight] + ([scale] if scaled else [])
    return [out, *torch.autograd.grad(out, leaves, torch.randn(out.shape, dtype=torch.float64, generator=gen))]


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
@pytest.mark.parametrize("scaled", [False, True])
def test_row_kernels_match_torch_fallbacks_and_each_other(kind, scaled):
    rulebook = random_rulebook(kind, torch.Generator().manual_seed(2), num_sites=30)
    results = {}
    for path in ("native", "numba", "torch"):
        with cpu_kernel_paths(path):
            results[path] = _outputs_and_grads(rulebook, 3, scaled)
    for a, b in zip(results["native"], results["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(results["native"], results["numba"]):
        assert torch.equal(a, b)


def test_chunks_smaller_than_the_rulebook_give_the_same_bits(monkeypatch):
    """Offsets split over many scratch-sized chunks sum each row in the same order as one chunk."""
    rulebook = random_rulebook("subm", torch.Generator().manual_seed(4), num_sites=60)
    whole = _outputs_and_grads(rulebook, 5, True)
    monkeypatch.setattr(importlib.import_module("irregconv.engine.gather_scatter"), "CHUNK_BYTES", 8)  # 1 offset each
    rulebook._derived.clear()
    for a, b in zip(whole, _outputs_and_grads(rulebook, 5, True)):
        assert torch.equal(a, b)


def test_scratch_buffers_are_reused_bounded_and_released():
    workspace.release_workspace()
    like = torch.zeros(1)
    first = workspace.scratch_rows("t", 10, 4, like)
    again = workspace.scratch_rows("t", 5, 4, like)
    assert again.data_ptr() == first.data_ptr() and again.shape == (5, 4)
    assert workspace.workspace_bytes() == 40 * 4
    huge_rows = workspace.CHUNK_BYTES // 4 + 1
    workspace.scratch_rows("big", huge_rows, 1, like)   # larger than a chunk: used once, not kept
    assert workspace.workspace_bytes() == 40 * 4
    workspace.release_workspace()
    assert workspace.workspace_bytes() == 0
