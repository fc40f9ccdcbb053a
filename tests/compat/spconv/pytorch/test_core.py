"""spconv.pytorch.core: SparseConvTensor (construction, assignment, dense, arithmetic, checks, minus /
select_by_index / shadow_copy) and IndiceData (spconv's fields, the rulebook in spconv's layout)."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")


def test_key_records_are_copied_per_layer_not_shared(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    y = spconv.SubMConv3d(4, 4, 3, indice_key="a")(x)
    assert x.indice_dict == {} and set(y.indice_dict) == {"a"}
    assert y.replace_feature(y.features * 2).indice_dict is y.indice_dict
    record = y.find_indice_pair("a")
    assert record.is_subm and record.ksize == [3, 3, 3] and record.spatial_shape == shape
    assert torch.equal(record.indices, coords) and torch.equal(record.out_indices, coords)


def test_int64_indices_are_accepted_and_stored_as_int32(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords.long(), shape, batch)
    assert x.indices.dtype == torch.int32 and torch.equal(x.indices, coords)
    conv = spconv.SubMConv3d(4, 3, 3)
    torch.testing.assert_close(conv(x).features, conv(spconv.SparseConvTensor(feats, coords, shape, batch)).features,
                               rtol=0, atol=0)
    assert spconv.SparseConvTensor(feats, coords, shape, torch.tensor(2)).batch_size == 2


def test_features_and_indices_are_assignable(make_input):
    feats, coords, shape, batch = make_input()
    conv = spconv.SubMConv3d(4, 3, 3)
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    x.features = feats * 2  # spconv 1.x style, still used by detectors' replace_feature helpers
    torch.testing.assert_close(conv(x).features, conv(spconv.SparseConvTensor(feats * 2, coords, shape, batch)).features)
    other_feats, other_coords, _, _ = make_input(seed=1)
    x.features, x.indices = other_feats, other_coords.long()
    expected = conv(spconv.SparseConvTensor(other_feats, other_coords, shape, batch))
    torch.testing.assert_close(conv(x).features, expected.features, rtol=0, atol=0)


def test_in_place_change_of_indices_rebuilds_the_sites(make_input):
    feats, coords, shape, batch = make_input(spatial_shape=(9, 10, 11))
    conv = spconv.SubMConv3d(4, 3, 3)
    x = spconv.SparseConvTensor(feats, coords.clone(), [18, 20, 22], batch)
    before = conv(x)
    x.indices[:, 1:] *= 2  # as multi-scale detector code does before concatenating levels
    after = conv(x)
    torch.testing.assert_close(after.features, conv(spconv.SparseConvTensor(feats, coords * torch.tensor(
        [1, 2, 2, 2], dtype=torch.int32), [18, 20, 22], batch)).features, rtol=0, atol=0)
    assert not torch.equal(before.features, after.features)
    x.indices[1] = x.indices[0]
    with pytest.raises(ValueError, match="SparseConvTensor.indices: .*coords has duplicate site"):
        conv(x)


@needs_spconv
def test_dense_matches_spconv(real_spconv, make_input):
    feats, coords, shape, batch = make_input()
    expected = real_spconv().SparseConvTensor(feats, coords, shape, batch)
    ours = spconv.SparseConvTensor(feats, coords, shape, batch)
    torch.testing.assert_close(ours.dense(), expected.dense(), rtol=0, atol=0)
    assert ours.dense().is_contiguous()  # detector code reshapes it with .view
    torch.testing.assert_close(ours.dense(channels_first=False), expected.dense(channels_first=False), rtol=0, atol=0)
    torch.testing.assert_close(spconv.ToDense()(ours), expected.dense(), rtol=0, atol=0)
    back = spconv.SparseConvTensor.from_dense(ours.dense(channels_first=False))
    torch.testing.assert_close(back.dense(), ours.dense(), rtol=0, atol=0)
    assert ours.spatial_size == 9 * 10 * 11


def test_tensor_arithmetic_and_add_input(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    assert torch.equal((x + x).features, feats * 2) and torch.equal((x + feats).features, feats * 2)
    conv = spconv.SubMConv3d(4, 4, 3)
    torch.testing.assert_close(conv(x, add_input=x).features, conv(x).features + feats, rtol=0, atol=0)


@pytest.mark.parametrize("args,error,match", [
    ((torch.zeros(3, 2), torch.zeros(3, 4), [4, 4, 4], 1), TypeError, "indices must be int32 or int64, got torch.float32"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4], 1), ValueError,
     r"spatial_shape \[4, 4\] has 2 axes but indices has 3 spatial columns"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4.5, 4], 1), TypeError,
     r"spatial_shape must be a sequence of 3 ints, got \[4, 4.5, 4\]"),
    ((torch.zeros(3, 2), torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 0), ValueError,
     "batch_size must be a positive int, got 0"),
    ((torch.zeros(3), torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 1), ValueError,
     r"features must have shape \[N, C\], got \[3\]"),
    (([[0.0]], torch.zeros(3, 4, dtype=torch.int32), [4, 4, 4], 1), TypeError, "features must be a torch.Tensor"),
])
def test_tensor_bad_input(args, error, match):
    with pytest.raises(error, match=f"SparseConvTensor: {match}"):
        spconv.SparseConvTensor(*args)


def test_rows_and_bounds_are_checked_when_a_layer_runs(make_input):
    feats, coords, shape, batch = make_input()
    conv = spconv.SubMConv3d(4, 4, 3)
    with pytest.raises(ValueError, match="features has 239 rows but indices has 240"):
        conv(spconv.SparseConvTensor(feats[1:], coords, shape, batch))
    with pytest.raises(ValueError, match=r"SparseConvTensor.indices: .*coords has spatial axis 2 \(column 3\)"):
        conv(spconv.SparseConvTensor(feats, coords, [9, 10, 5], batch))
    negative = coords.clone()
    negative[5, 2] = -1  # spconv accepts this silently (NOTES.md)
    with pytest.raises(ValueError, match="SparseConvTensor.indices: .*coords column 2 has negative value -1"):
        conv(spconv.SparseConvTensor(feats, negative, shape, batch))


def test_concatenated_levels_pattern(make_input):
    """Multi-scale detector code scales coarse indices in place, concatenates features and indices of two
    levels by assignment, and runs on: the sites are rebuilt from what the tensor holds now."""
    feats, coords, shape, batch = make_input()
    fine = spconv.SubMConv3d(4, 4, 3, indice_key="s1")(spconv.SparseConvTensor(feats, coords, shape, batch))
    coarse = spconv.SparseConv3d(4, 4, 3, 2, 1, indice_key="d1")(fine)
    coarse.indices[:, 1:] *= 2
    flat = torch.tensor([10 ** 6, 10 ** 4, 10 ** 2, 1])
    new = ~torch.isin(coarse.indices.long() @ flat, fine.indices.long() @ flat)
    merged = fine.replace_feature(torch.cat([fine.features, coarse.features[new]]))
    merged.indices = torch.cat([fine.indices, coarse.indices[new]])
    conv = spconv.SubMConv3d(4, 2, 3)
    expected = conv(spconv.SparseConvTensor(merged.features, merged.indices.clone(), shape, batch))
    torch.testing.assert_close(conv(merged).features, expected.features, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"SparseConvTensor.indices: .*coords has spatial axis \d \(column "
                                         r"\d\) = \d+, but spatial_shape"):
        conv(coarse)  # its indices now lie outside its own (coarse) spatial_shape


def pair_triples(record, out_indices):
    """``{(k, input row, output site)}`` of a record's ``indice_pairs`` (output rows named by their coordinates,
    since spconv orders strided outputs its own way)."""
    pairs = record.indice_pairs
    k, j = (pairs[0] >= 0).nonzero(as_tuple=True)
    return {(int(a), int(b), tuple(out_indices[int(c)].tolist())) for a, b, c in zip(k, pairs[0, k, j], pairs[1, k, j])}


@needs_spconv
@pytest.mark.parametrize("name,args,kwargs", [
    ("SubMConv3d", (4, 5, 3), {}),
    ("SubMConv3d", (4, 5, (3, 1, 3)), {"dilation": 2}),
    ("SparseConv3d", (4, 5, 3, 2, 1), {}),
    ("SparseConv3d", (4, 5, (2, 3, 1), (2, 1, 1), (0, 1, 0)), {}),
    ("SparseConvTranspose3d", (4, 5, 3, 2), {}),
    ("SparseMaxPool3d", (3, 2, 1), {}),
])
def test_indice_data_fields_match_spconv(name, args, kwargs, real_spconv, run_spconv, make_input, shim_twin):
    feats, coords, shape, batch = make_input(60, (7, 8, 9))
    if "Pool" in name:
        theirs, ours = getattr(real_spconv(), name)(*args, **kwargs, indice_key="k"), getattr(spconv, name)(
            *args, **kwargs, indice_key="k")
    else:
        theirs, ours = shim_twin(name, *args, **kwargs, indice_key="k")
    expected = run_spconv(theirs, feats.abs(), coords, shape, batch).find_indice_pair("k")
    got = ours(spconv.SparseConvTensor(feats.abs(), coords, shape, batch)).find_indice_pair("k")
    for field in ("is_subm", "ksize", "stride", "dilation", "spatial_shape", "out_spatial_shape"):
        assert getattr(got, field) == getattr(expected, field), field
    if not got.is_subm:  # spconv records a submanifold layer's padding argument, which has no effect
        assert got.padding == expected.padding
    assert got.algo is spconv.ConvAlgo.Native and str(expected.algo) == "ConvAlgo.Native"
    assert torch.equal(got.indices, expected.indices)
    assert got.indice_pairs.shape == expected.indice_pairs.shape and got.indice_pairs.dtype == torch.int32
    assert pair_triples(got, got.out_indices) == pair_triples(expected, expected.out_indices)
    their_columns = (expected.indice_pairs[0] >= 0).sum(1).int()
    assert torch.equal(got.indice_pair_num, their_columns)
    if not got.is_subm:  # spconv's CPU submanifold count leaves out the centre and the offsets after it
        assert torch.equal(got.indice_pair_num, expected.indice_pair_num)
    assert int(got.indice_pair_num.sum()) == got.rulebook.num_pairs


@needs_spconv
def test_minus_and_shadow_copy_match_spconv(real_spconv, make_input):
    feats, coords, shape, batch = make_input()
    theirs = real_spconv().SparseConvTensor(feats, coords, shape, batch, indice_dict={"k": None})
    ours = spconv.SparseConvTensor(feats, coords, shape, batch, indice_dict={"k": None})
    assert torch.equal(ours.minus().features, theirs.minus().features)
    assert torch.equal(ours.minus().indices, theirs.minus().indices)
    for x in (ours, theirs):
        copy = x.shadow_copy()
        assert copy is not x and copy.features is x.features and copy.indices is x.indices
        assert copy.indice_dict is x.indice_dict and copy.spatial_shape == x.spatial_shape
    leaf = feats.clone().requires_grad_()
    spconv.SparseConvTensor(leaf, coords, shape, batch).minus().features.sum().backward()
    assert torch.equal(leaf.grad, -torch.ones_like(feats))


@needs_spconv
def test_select_by_index(real_spconv, make_input):
    feats, coords, shape, batch = make_input()
    with pytest.raises(ValueError, match="you can't set feature directly"):  # spconv 2.3.8's own is broken
        real_spconv().SparseConvTensor(feats, coords, shape, batch).select_by_index(torch.arange(3))
    x = spconv.SubMConv3d(4, 4, 3, indice_key="s")(spconv.SparseConvTensor(feats, coords, shape, batch))
    rows = torch.tensor([5, 0, 17, 3])
    mask = torch.zeros(coords.size(0), dtype=torch.bool)
    mask[rows] = True
    conv = spconv.SubMConv3d(4, 2, 3)
    for index, order in ((rows, rows), (mask, rows.sort().values)):
        picked = x.select_by_index(index)
        assert torch.equal(picked.features, x.features[order]) and torch.equal(picked.indices, x.indices[order])
        assert picked.indice_dict == {} and set(x.indice_dict) == {"s"}
        assert picked.spatial_shape == shape and picked.batch_size == batch
        expected = conv(spconv.SparseConvTensor(x.features[order], coords[order], shape, batch))
        assert torch.equal(conv(picked).features, expected.features)
    with pytest.raises(TypeError, match=r"SparseConvTensor.select_by_index: valid_indices must be a bool mask "
                                        r"\[N\] = \[240\] or an integer tensor of row indices \[M\], got torch.float32"):
        x.select_by_index(rows.float())
    with pytest.raises(ValueError, match="the bool mask has 3 entries but the tensor has 240 rows"):
        x.select_by_index(mask[:3])
