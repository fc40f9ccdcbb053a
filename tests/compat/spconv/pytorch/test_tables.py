"""spconv.pytorch.tables: ConcatTable, JoinTable and AddTable against spconv 2.3.8 (in a SparseSequential, as
SparseConvNet-style models use them), AddTableMisaligned against sparse_add, and the checks spconv leaves out."""
import pytest
import torch

from irregconv.compat import spconv
from irregconv.testing import with_package

needs_spconv = with_package("spconv")


def branches(sp, table):
    """A residual-style block: two submanifold branches on one input, merged by ``table``."""
    return sp.SparseSequential(sp.ConcatTable().add(sp.SubMConv3d(4, 4, 3, indice_key="s"))
                               .add(sp.SubMConv3d(4, 4, 1, indice_key="s1")), table)


@needs_spconv
@pytest.mark.parametrize("table", ["JoinTable", "AddTable"])
def test_tables_match_spconv(table, real_spconv, run_spconv, make_input):
    feats, coords, shape, batch = make_input()
    real = real_spconv()
    theirs, ours = branches(real, getattr(real, table)()), branches(spconv, getattr(spconv, table)())
    ours.load_state_dict(theirs.state_dict())
    expected = run_spconv(theirs, feats, coords, shape, batch)
    got = ours(spconv.SparseConvTensor(feats, coords, shape, batch))
    assert torch.equal(got.indices, expected.indices) and set(got.indice_dict) == set(expected.indice_dict) == {"s"}
    torch.testing.assert_close(got.features, expected.features, rtol=1e-4, atol=1e-5)
    assert ours[0].input_spatial_size is not None and ours[1].input_spatial_size([3, 3]) == [3, 3]


def test_join_table_concatenates_any_channel_counts_and_add_table_sums(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    parts = [x, x.replace_feature(feats[:, :1] * 2), x.minus()]
    joined = spconv.JoinTable()(parts)
    assert torch.equal(joined.features, torch.cat([feats, feats[:, :1] * 2, -feats], dim=1))
    assert joined.indices is x.indices
    assert torch.equal(spconv.AddTable()([x, x, x.minus()]).features, feats + feats - feats)
    assert torch.equal(spconv.AddTable()([x]).features, feats)
    outputs = spconv.ConcatTable().add(spconv.SparseIdentity()).add(spconv.SparseReLU())(x)
    assert torch.equal(outputs[0].features, feats) and torch.equal(outputs[1].features, feats.relu())


def test_add_table_misaligned_sums_on_the_union_of_sites(make_input):
    feats, coords, shape, batch = make_input()
    a = spconv.SparseConvTensor(feats[:150], coords[:150], shape, batch)
    b = spconv.SparseConvTensor(feats[100:] * 3, coords[100:], shape, batch)
    got = spconv.AddTableMisaligned()([a, b])
    expected = spconv.functional.sparse_add(a, b)
    assert torch.equal(got.indices, expected.indices) and torch.equal(got.features, expected.features)
    assert got.features.size(0) == coords.size(0)
    assert spconv.AddTableMisaligned().input_spatial_size([2]) == [2]


def test_tables_check_their_input(make_input):
    feats, coords, shape, batch = make_input()
    x = spconv.SparseConvTensor(feats, coords, shape, batch)
    shuffled = spconv.SparseConvTensor(feats.flip(0), coords.flip(0), shape, batch)  # same count, other order
    for table in (spconv.AddTable(), spconv.JoinTable()):
        name = type(table).__name__
        with pytest.raises(ValueError, match=f"{name}: input\\[1\\] has 240 sites .* must have the same indices in "
                                             f"the same order \\(use AddTableMisaligned"):
            table([x, shuffled])
        with pytest.raises(TypeError, match=f"{name}: input must be a non-empty list of SparseConvTensors, got an "
                                            f"empty list"):
            table([])
        with pytest.raises(TypeError, match=f"{name}: input\\[1\\] must be a SparseConvTensor, got Tensor"):
            table([x, feats])
    with pytest.raises(ValueError, match=r"AddTable: the tensors have \[4, 2\] channels"):
        spconv.AddTable()([x, x.replace_feature(feats[:, :2])])
    with pytest.raises(TypeError, match="AddTableMisaligned: input must be a list of SparseConvTensors, got "
                                        "SparseConvTensor"):
        spconv.AddTableMisaligned()(x)
    with pytest.raises(TypeError, match="ConcatTable.add: module must be a torch.nn.Module, got function"):
        spconv.ConcatTable().add(lambda x: x)
