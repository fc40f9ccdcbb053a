"""Weight layouts and spconv checkpoints: conversions, spconv state dicts loading unchanged, exact round trips."""
import torch
from torch import nn

from irregconv.compat import spconv
from irregconv.models.second import spconv_second_backbone_8x
from irregconv.testing import with_package

needs_spconv = with_package("spconv")


def test_weight_layout_conversions_round_trip():
    weight = torch.randn(8, 3, 1, 2, 5)
    native = spconv.weight_to_native(weight)
    assert native.shape == (6, 5, 8) and torch.equal(native[4], weight[:, 2, 0, 0, :].t())
    assert torch.equal(spconv.weight_from_native(native, (3, 1, 2)), weight)
    one = torch.randn(8, 1, 1, 1, 5)
    assert torch.equal(spconv.weight_to_native(one, conv1x1=True)[0], one.reshape(5, 8))
    assert torch.equal(spconv.weight_from_native(spconv.weight_to_native(one, True), (1, 1, 1), True), one)


@needs_spconv
def test_spconv_checkpoint_loads_unchanged_and_gives_spconv_outputs(tmp_path, real_spconv, run_spconv, sorted_rows, make_input):
    feats, coords, shape, batch = make_input()
    real = real_spconv()
    theirs = real.SparseSequential(real.SubMConv3d(4, 8, 3, indice_key="s1"), nn.BatchNorm1d(8), nn.ReLU(),
                                   real.SubMConv3d(8, 6, 1), real.SparseConv3d(6, 5, 3, 2, 1, indice_key="d1"),
                                   real.SparseConv3d(5, 3, 1, record_voxel_count=True))
    path = tmp_path / "spconv_checkpoint.pth"
    torch.save(theirs.state_dict(), path)
    ours = spconv.SparseSequential(spconv.SubMConv3d(4, 8, 3, indice_key="s1"), nn.BatchNorm1d(8), nn.ReLU(),
                                   spconv.SubMConv3d(8, 6, 1), spconv.SparseConv3d(6, 5, 3, 2, 1, indice_key="d1"),
                                   spconv.SparseConv3d(5, 3, 1, record_voxel_count=True))
    ours.load_state_dict(torch.load(path))
    expected = run_spconv(theirs.eval(), feats, coords, shape, batch)
    got = ours.eval()(spconv.SparseConvTensor(feats, coords, shape, batch))
    got_feats, got_idx = sorted_rows(got.features, got.indices, got.spatial_shape)
    exp_feats, exp_idx = sorted_rows(expected.features, expected.indices, expected.spatial_shape)
    assert torch.equal(got_idx, exp_idx)
    torch.testing.assert_close(got_feats, exp_feats, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_is_exact(make_input):
    feats, coords, shape, batch = make_input()
    torch.manual_seed(3)
    first = spconv_second_backbone_8x(spconv)
    second = spconv_second_backbone_8x(spconv)
    second.load_state_dict(first.state_dict())
    x = spconv.SparseConvTensor(feats, coords, [41, 10, 11], batch)
    torch.testing.assert_close(second(x).features, first(x).features, rtol=0, atol=0)
