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
