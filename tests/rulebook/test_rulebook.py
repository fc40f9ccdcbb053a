"""Rulebook record: transpose (involution, adjoint, pair correspondence), invariants of every kind, basics."""
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from irregconv.engine import gather_scatter
from irregconv.rulebook import Geometry, Rulebook
from irregconv.testing import (RULEBOOK_KINDS, assert_rulebook_invariants, random_rulebook, rulebook_triples,
                               torch_rulebook_paths)

F64 = dict(rtol=1e-7, atol=1e-9)


@st.composite
def rulebooks(draw, kinds=RULEBOOK_KINDS):
    kind = draw(st.sampled_from(kinds))
    dims = draw(st.integers(1, 3)) if kind != "graph" else 3
    shape = tuple(draw(st.lists(st.integers(3, 6), min_size=dims, max_size=dims)))
    kernel_size = draw(st.sampled_from([1, 2, 3]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31 - 1)))
    return random_rulebook(kind, gen, num_sites=draw(st.integers(0, 20)), spatial_shape=shape,
                           batch_size=draw(st.integers(1, 3)), kernel_size=kernel_size)


def _canonical(triples):
    """Rows of ``[P, 3]`` sorted lexicographically (stable sorts, last key first; repeats kept)."""
    for column in (2, 1, 0):
        triples = triples[torch.sort(triples[:, column], stable=True).indices]
    return triples


def _fresh(rulebook):
    """The same record without anything cached on it."""
    return dataclasses.replace(rulebook, _derived={})


@settings(max_examples=40, deadline=None)
@given(rulebooks())
def test_transpose_swaps_pairs_and_is_an_involution(rb):
    assert_rulebook_invariants(rb)
    t = rb.transpose()
    assert_rulebook_invariants(t)
    assert (t.num_in, t.num_out, t.kernel_volume, t.num_pairs) == (rb.num_out, rb.num_in, rb.kernel_volume,
                                                                   rb.num_pairs)
    assert t.injective == rb.injective and t.identity_offset == rb.identity_offset
    torch.testing.assert_close(rulebook_triples(t), _canonical(rulebook_triples(rb)[:, [0, 2, 1]]), rtol=0, atol=0)
    back = _fresh(t).transpose()
    torch.testing.assert_close(rulebook_triples(back), rulebook_triples(rb), rtol=0, atol=0)
    assert back.geometry == rb.geometry
    assert rb.transpose() is t and t.transpose() is rb  # cached both ways
    if rb.pair_ids is not None:
        # each pair keeps its edge id: (in, out) of edge e is swapped in the transpose
        order = torch.sort(t.pair_ids).indices
        torch.testing.assert_close(t.out_idx[order], rb.in_idx[torch.sort(rb.pair_ids).indices], rtol=0, atol=0)
        torch.testing.assert_close(back.pair_ids, rb.pair_ids, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(rulebooks(), st.booleans(), st.booleans())
def test_transpose_is_the_adjoint(rb, grouped, scaled):
    # <gather_scatter(x, W, R), y> == <x, gather_scatter(y, W^T, R^T)>, with pair scales carried along
    gen = torch.Generator().manual_seed(rb.num_pairs)
    shape = (rb.kernel_volume, 2, 2, 3) if grouped else (rb.kernel_volume, 4, 6)
    weight = torch.randn(shape, dtype=torch.float64, generator=gen)
    x = torch.randn(rb.num_in, 4, dtype=torch.float64, generator=gen)
    y = torch.randn(rb.num_out, 6, dtype=torch.float64, generator=gen)
    scale = torch.rand(rb.num_pairs, dtype=torch.float64, generator=gen) if scaled else None
    t = _fresh(rb).transpose()
    # pair p of the transpose is the pair of rb with the same (offset, in, out): match them by their triples
    scale_t = None
    if scaled:
        keyed = lambda tr: (tr[:, 0] * (rb.num_in + 1) + tr[:, 2]) * (rb.num_out + 1) + tr[:, 1]  # noqa: E731
        key_rb = keyed(rulebook_triples(rb))
        key_t = keyed(rulebook_triples(t)[:, [0, 2, 1]])
        sorted_rb, order_rb = torch.sort(key_rb, stable=True)
        scale_t = scale[order_rb[torch.searchsorted(sorted_rb, key_t)]]
        if rb.pair_ids is not None:  # graph: repeated edges make triples ambiguous, the edge id is exact
            scale_t = scale[torch.sort(rb.pair_ids).indices[t.pair_ids]]
    lhs = (gather_scatter(x, weight, rb, scale) * y).sum()
    rhs = (x * gather_scatter(y, weight.transpose(-1, -2), t, scale_t)).sum()
    torch.testing.assert_close(lhs, rhs, **F64)


def test_inverse_of_strided_maps_back_onto_the_input_sites():
    rb = random_rulebook("strided", torch.Generator().manual_seed(4), num_sites=30)
    inverse = rb.transpose()
    assert inverse.geometry.kind == "inverse" and inverse.transpose().geometry.kind == "strided"
    assert inverse.geometry.in_spatial_shape == rb.geometry.out_spatial_shape
    assert inverse.geometry.out_spatial_shape == rb.geometry.in_spatial_shape
    # every input site of the strided conv is reached (each lies inside the padded grid)
    assert torch.unique(inverse.out_idx).numel() == rb.num_in


def test_record_basics():
    rb = Rulebook(in_idx=torch.tensor([0, 2, 1]), out_idx=torch.tensor([1, 0, 1]),
                  offset_ptr=torch.tensor([0, 1, 1, 3]), num_in=3, num_out=2,
                  geometry=Geometry("strided", stride=(2,), in_spatial_shape=(5,), out_spatial_shape=(2,)))
    assert_rulebook_invariants(rb)
    assert rb.kernel_volume == 3 and rb.num_pairs == 3 and rb.device.type == "cpu"
    assert rb.offset_slices() == [(0, 0, 1), (2, 1, 3)]  # offset 1 has no pair and is skipped
    torch.testing.assert_close(rb.counts(), torch.tensor([1, 0, 2]), rtol=0, atol=0)
    assert rb.to("cpu") is rb
    assert repr(rb) == "Rulebook(kind='strided', K=3, pairs=3, num_in=3, num_out=2)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rb.num_in = 4
    t = rb.transpose()
    torch.testing.assert_close(t.in_idx, torch.tensor([1, 1, 0]), rtol=0, atol=0)
    torch.testing.assert_close(t.out_idx, torch.tensor([0, 1, 2]), rtol=0, atol=0)
    assert t.geometry.in_spatial_shape == (2,) and t.geometry.out_spatial_shape == (5,)


@pytest.mark.parametrize("kind", RULEBOOK_KINDS)
def test_every_kind_satisfies_the_invariants(kind):
    for seed in range(3):
        rb = random_rulebook(kind, torch.Generator().manual_seed(seed))
        assert_rulebook_invariants(rb)
        assert rb.geometry.kind == kind and rb.num_pairs > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2 ** 31 - 1))
def test_sort_pairs_radix_equals_a_stable_comparison_sort(num_pairs, num_k, num_in, num_out, seed):
    """The CPU radix sort (numba) gives exactly the permutation of a stable sort by (offset, out, in), repeated
    pairs in input order; the torch path (any device) is that stable sort."""
    from irregconv.rulebook.rulebook import sort_pairs
    gen = torch.Generator().manual_seed(seed)
    offset = torch.randint(0, num_k, (num_pairs,), generator=gen)
    in_idx = torch.randint(0, num_in, (num_pairs,), generator=gen)   # few values: many repeated pairs
    out_idx = torch.randint(0, num_out, (num_pairs,), generator=gen)
    key = (offset * num_out + out_idx) * num_in + in_idx
    expected = torch.tensor(sorted(range(num_pairs), key=lambda p: (int(key[p]), p)), dtype=torch.long)
    assert torch.equal(sort_pairs(offset, in_idx, out_idx, num_in, num_out), expected)
    with torch_rulebook_paths():
        assert torch.equal(sort_pairs(offset, in_idx, out_idx, num_in, num_out), expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([1, 5, 4096, 4097, 2 ** 24 + 3, 2 ** 40]), st.integers(0, 2 ** 31 - 1))
def test_argsort_keys_radix_equals_a_stable_comparison_sort(num_keys, key_bound, seed):
    """The strided builder's radix sort of candidate keys gives the sorted keys and exactly the permutation of
    a stable sort (repeated keys in input order), for one to four 12-bit digits."""
    from irregconv.rulebook._numba_kernels import argsort_keys
    gen = torch.Generator().manual_seed(seed)
    keys = (torch.rand(num_keys, generator=gen, dtype=torch.float64) * key_bound).long().clamp(max=key_bound - 1)
    keys = keys[torch.randint(0, max(num_keys, 1), (num_keys,), generator=gen)]  # repeats
    sorted_keys, order = argsort_keys(keys.numpy(), key_bound)
    expected = torch.sort(keys, stable=True)
    assert torch.equal(torch.from_numpy(order), expected.indices)
    assert torch.equal(torch.from_numpy(sorted_keys), expected.values)
