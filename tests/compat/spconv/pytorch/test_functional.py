"""spconv.pytorch.functional: sparse_add of tensors on different sites against spconv 2.3.8's sparse_add (after
sorting rows) and a dense oracle (values and gradients), the kept order and indice_dict, and argument errors."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.testing import densify, random_coords, with_package

needs_spconv = with_package("spconv")
SHAPE, BATCH = [6, 7, 8], 2


def operands(sizes, seed, channels=3, dtype=torch.float32, real=None):
    """Tensors with random, partly overlapping sites (drawn from one pool of sites)."""
    gen = torch.Generator().manual_seed(seed)
    pool = random_coords(max(sizes) + 30, SHAPE, BATCH, generator=gen)
    out = []
    for size in sizes:
        rows = torch.randperm(pool.size(0), generator=gen)[:size]
        feats = torch.randn(size, channels, generator=gen, dtype=dtype)
        out.append((real or spconv).SparseConvTensor(feats, pool[rows], SHAPE, BATCH))
    return out


@needs_spconv
@pytest.mark.parametrize("sizes", [(40, 50), (70, 20, 45), (1, 60)])
def test_sparse_add_matches_spconv(sizes, real_spconv, sorted_rows):
    from spconv.pytorch.functional import sparse_add as theirs
    real = real_spconv()
    ours_in = operands(sizes, seed=len(sizes))
    theirs_in = [real.SparseConvTensor(t.features, t.indices, SHAPE, BATCH) for t in ours_in]
    expected, got = theirs(*theirs_in), spconv.functional.sparse_add(*ours_in)
    got_feats, got_idx = sorted_rows(got.features, got.indices, SHAPE)
    assert torch.equal(got_idx, expected.indices)  # spconv's rows come sorted by coordinates
    torch.testing.assert_close(got_feats, expected.features, rtol=1e-6, atol=1e-6)
    assert got.spatial_shape == SHAPE and got.batch_size == BATCH


def test_sparse_add_values_and_gradients_match_a_dense_sum():
    a, b, c = operands((30, 45, 12), seed=5, dtype=torch.float64)
    leaves = [t.features.clone().requires_grad_() for t in (a, b, c)]
    out = spconv.functional.sparse_add(*[t.replace_feature(leaf) for t, leaf in zip((a, b, c), leaves)])
    dense = sum(densify(t.features, t.indices, SHAPE, BATCH) for t in (a, b, c))
    torch.testing.assert_close(out.dense(), dense, rtol=1e-12, atol=1e-12)
    occupied = densify(torch.ones(out.indices.size(0), 1, dtype=torch.float64), out.indices, SHAPE, BATCH)
    assert int(occupied.sum()) == out.indices.size(0) == len({tuple(r) for t in (a, b, c) for r in t.indices.tolist()})
    weights = torch.randn_like(out.features)
    (out.features * weights).sum().backward()
    grid = densify(weights, out.indices, SHAPE, BATCH)
    for t, leaf in zip((a, b, c), leaves):
        expected = grid[t.indices[:, 0].long(), :, t.indices[:, 1].long(), t.indices[:, 2].long(), t.indices[:, 3].long()]
        torch.testing.assert_close(leaf.grad, expected, rtol=0, atol=0)
    small = operands((4, 5), seed=6, channels=2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x, y: spconv.functional.sparse_add(
        small[0].replace_feature(x), small[1].replace_feature(y)).features,
        tuple(t.features.clone().requires_grad_() for t in small))


def test_sum_on_the_largest_operands_sites_keeps_its_rows_and_indice_dict(make_input):
    feats, coords, shape, batch = make_input()
    big = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="down")(spconv.SparseConvTensor(feats, coords, shape, batch))
    rows = torch.tensor([7, 2, 30])
    small = spconv.SparseConvTensor(torch.ones(3, 4), big.indices[rows], big.spatial_shape, batch)
    out = spconv.functional.sparse_add(small, big)
    assert out.indices is big.indices and out.indice_dict is big.indice_dict
    expected = big.features.clone()
    expected[rows] += 1
    torch.testing.assert_close(out.features, expected, rtol=0, atol=0)
    up = spconv.SparseInverseConv3d(4, 2, 3, "down")(out)  # the recorded rulebook still applies
    assert torch.equal(up.indices, coords)
    taken = {tuple(row) for row in big.indices.tolist()}
    free = next(site for site in ([0, z, y, x] for z in range(5) for y in range(5) for x in range(6))
                if tuple(site) not in taken)
    other = spconv.SparseConvTensor(torch.ones(1, 4), torch.tensor([free], dtype=torch.int32), big.spatial_shape, batch)
    assert spconv.functional.sparse_add(big, other).indice_dict == {}  # new sites: the records no longer apply
    assert torch.equal(spconv.functional.sparse_add_hash_based(small, big).features, out.features)


def test_sparse_add_bad_input():
    a, b = operands((5, 6), seed=7)
    with pytest.raises(ValueError, match="sparse_add: give at least one SparseConvTensor, got none"):
        spconv.functional.sparse_add()
    with pytest.raises(TypeError, match="sparse_add: argument 1 must be a SparseConvTensor, got Tensor"):
        spconv.functional.sparse_add(a, b.features)
    with pytest.raises(ValueError, match=r"sparse_add: tensor 1 has spatial_shape \[6, 7, 9\] but tensor 0 has "
                                         r"\[6, 7, 8\]"):
        spconv.functional.sparse_add(a, spconv.SparseConvTensor(b.features, b.indices, [6, 7, 9], BATCH))
    with pytest.raises(ValueError, match="sparse_add: tensor 1 has channel count 2 but tensor 0 has 3"):
        spconv.functional.sparse_add(a, b.replace_feature(b.features[:, :2]))
    with pytest.raises(ValueError, match="sparse_add_hash_based: tensor 1 has batch_size 3"):
        spconv.functional.sparse_add_hash_based(a, spconv.SparseConvTensor(b.features, b.indices, SHAPE, 3))
