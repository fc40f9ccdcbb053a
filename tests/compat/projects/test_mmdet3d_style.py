"""mmdetection3d-style code (``models/mmdet3d_style.py``) on irregconv's spconv drop-in against the same file
on spconv 2.3.8: the version probe and ``register_spconv2``, the replaced ``SparseModule._load_from_state_dict``
loading spconv 1.x checkpoints, ``SparseEncoder`` (both block types) and ``SparseUNet`` on real KITTI scans,
and a training step of ``make_sparse_convmodule`` stacks against a dense torch oracle."""
import pytest
import torch
import torch.nn.functional as F

from irregconv.data import read_points, voxelize
from irregconv.testing import (assert_close_with_grads, assert_scaled_close, data_path, densify, dense_conv,
                               krsc_to_torch, random_coords, reference_output_sites, values_at, with_data, with_package)

pytestmark = with_package("spconv")

# SECOND's KITTI voxels (mmdet3d's hard voxelization + mean VFE) on a crop of the range, to keep the tests fast
POINT_RANGE = (0.0, -6.4, -3.0, 11.2, 6.4, 1.0)
VOXEL_SIZE = (0.05, 0.05, 0.1)
SPARSE_SHAPE = [41, 256, 224]  # mmdet3d's sparse_shape: the grid plus one layer in z
SCANS = ["kitti_training_000000.bin", "kitti_training_000001.bin"]
# float32 through a whole encoder: within 1e-4 of the output's largest magnitude (spconv's own float32 error
# on KITTI is ~1e-5 of the scale, measured against float64 in tests/compat/test_spconv.py)
PATCHED = ("_version", "_load_from_state_dict")
# SparseEncoder as SECOND configures it (the defaults) and as CenterPoint does (residual blocks)
ENCODER_CONFIGS = {
    "conv_module": dict(),
    "basicblock": dict(encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
                       encoder_paddings=((0, 0, 1), (0, 0, 1), (0, 0, [0, 1, 1]), (0, 0)), block_type="basicblock"),
}


@pytest.fixture
def sparse_module_patches_undone(monkeypatch):
    """``register_spconv2`` (run when the model file is loaded) patches ``SparseModule`` of spconv and of the
    drop-in; restore both classes when the test ends."""
    import spconv.pytorch as real
    from irregconv.compat import spconv as drop_in
    for cls in (real.SparseModule, drop_in.SparseModule):
        for name in PATCHED:
            monkeypatch.setattr(cls, name, getattr(cls, name))


@pytest.fixture
def mmdet3d_pair(load_models, sparse_module_patches_undone):
    return load_models("mmdet3d_style")


def kitti_voxels(scans=SCANS):
    voxels = voxelize([read_points(data_path("lidar", scan)) for scan in scans], VOXEL_SIZE, POINT_RANGE)
    return voxels.feats, voxels.coords, len(scans)



def test_version_probe_registers_spconv2_on_the_drop_in(mmdet3d_pair):
    """``spconv.__version__ >= '2.0.0'`` holds, the convolutions are registered by name, and the replaced
    loader is the one every registered convolution (and the blocks) will call."""
    for module in mmdet3d_pair:
        assert module.IS_SPCONV2_AVAILABLE is True
        assert module.spconv.__version__ == "2.3.8"
        assert sorted(module.CONV_LAYERS) == sorted([
            "SparseConv2d", "SparseConv3d", "SparseConv4d", "SparseConvTranspose2d", "SparseConvTranspose3d",
            "SparseInverseConv2d", "SparseInverseConv3d", "SubMConv2d", "SubMConv3d", "SubMConv4d"])
        assert module.SparseModule._version == 2
        for layer in [*module.CONV_LAYERS.values(), module.SparseSequential, module.SparseBasicBlock]:
            assert issubclass(layer, module.SparseModule), layer
            assert layer._load_from_state_dict is module._load_from_state_dict, layer
            assert layer._version == 2, layer
    theirs, ours = mmdet3d_pair
    assert ours.SparseConvTensor.__module__.startswith("irregconv.")
    assert theirs.SparseConvTensor.__module__.startswith("spconv.")


def test_checkpoint_versions_through_the_replaced_loader(mmdet3d_pair):
    """A spconv 2.x state dict (metadata version 2) loads as it is; a spconv 1.x one (``(*kernel, C_in,
    C_out)`` weights, no version) is permuted by the replaced loader; both give spconv's weights on both."""
    theirs_module, ours_module = mmdet3d_pair
    def build(module):
        return module.SparseEncoder(4, SPARSE_SHAPE, **ENCODER_CONFIGS["basicblock"])

    reference = build(theirs_module).state_dict()
    conv_keys = {key for key, value in reference.items() if value.dim() == 5}
    # input, three stages of two residual blocks (two convolutions each) and a strided convolution, a last stage
    # of two residual blocks, output
    assert len(conv_keys) == 1 + 3 * (2 * 2 + 1) + 2 * 2 + 1
    for module in mmdet3d_pair:
        saved = build(module).state_dict()
        for key in conv_keys:
            assert saved._metadata[key.rsplit(".", 1)[0]]["version"] == 2, key
    spconv1 = {key: value.permute(1, 2, 3, 4, 0) if key in conv_keys else value for key, value in reference.items()}
    for module in mmdet3d_pair:
        for checkpoint in (reference, spconv1):
            model = build(module)
            result = model.load_state_dict(checkpoint)
            assert not result.missing_keys and not result.unexpected_keys
            for key, value in reference.items():
                assert torch.equal(model.state_dict()[key], value), (module.__name__, key)


@with_data("lidar")
@pytest.mark.parametrize("config", sorted(ENCODER_CONFIGS))
def test_sparse_encoder_matches_spconv_on_kitti(mmdet3d_pair, as_spconv_reference, twins, config):
    feats, coords, batch_size = kitti_voxels()
    theirs, ours = twins(mmdet3d_pair, lambda m: m.SparseEncoder(4, SPARSE_SHAPE, **ENCODER_CONFIGS[config]))
    with as_spconv_reference(theirs):
        expected = theirs(feats, coords, batch_size)
    with torch.no_grad():
        got = ours(feats, coords, batch_size)
    assert got.shape == expected.shape and got.shape[0] == batch_size
    assert_scaled_close(got, expected)


@with_data("lidar")
def test_sparse_unet_returns_to_the_input_voxels_as_spconv(mmdet3d_pair, as_spconv_reference, twins):
    feats, coords, batch_size = kitti_voxels(SCANS[:1])
    theirs, ours = twins(mmdet3d_pair, lambda m: m.SparseUNet(4, SPARSE_SHAPE))
    with as_spconv_reference(theirs):
        expected = theirs(feats, coords, batch_size)
    with torch.no_grad():
        got = ours(feats, coords, batch_size)
    assert torch.equal(got.indices, coords) and torch.equal(expected.indices, coords)
    assert_scaled_close(got.features, expected.features)


def test_training_step_matches_a_dense_oracle(mmdet3d_pair):
    """Two ``make_sparse_convmodule`` stacks (submanifold, then strided) with batch norms in training mode,
    read out with ``.dense()`` as SparseEncoder does: output and the gradients of the input features, both
    convolution weights and the norms' affine parameters equal those of dense ``conv3d`` in float64."""
    ours = mmdet3d_pair[1]
    norm_cfg = dict(type="BN1d", eps=1e-3, momentum=0.01)
    model = ours.SparseSequential(
        ours.make_sparse_convmodule(4, 8, 3, "subm1", padding=1, norm_cfg=norm_cfg),
        ours.make_sparse_convmodule(8, 16, 3, "spconv2", stride=2, padding=1, norm_cfg=norm_cfg,
                                    conv_type="SparseConv3d"),
    ).double().train()
    gen = torch.Generator().manual_seed(0)
    shape, batch_size = [9, 10, 11], 2
    coords = random_coords(60, shape, batch_size, generator=gen)
    feats = torch.randn(coords.size(0), 4, dtype=torch.float64, generator=gen, requires_grad=True)
    with torch.no_grad():
        for norm in (model[0][1], model[1][1]):
            norm.weight.uniform_(0.5, 1.5, generator=gen)
            norm.bias.normal_(0, 0.2, generator=gen)
    (conv1, bn1, _), (conv2, bn2, _) = model[0], model[1]
    out = model(ours.SparseConvTensor(feats, coords, shape, batch_size)).dense()

    out_coords = reference_output_sites(coords, shape, batch_size, (3, 3, 3), stride=2, padding=1)
    out_shape = [(s + 2 - 3) // 2 + 1 for s in shape]

    def norm_relu(rows, bn):
        return F.relu(F.batch_norm(rows, None, None, bn.weight, bn.bias, training=True, eps=bn.eps))

    hidden = norm_relu(values_at(dense_conv(densify(feats, coords, shape, batch_size), krsc_to_torch(conv1.weight),
                                            padding=1), coords), bn1)
    rows = norm_relu(values_at(dense_conv(densify(hidden, coords, shape, batch_size), krsc_to_torch(conv2.weight),
                                          stride=2, padding=1), out_coords), bn2)
    oracle = densify(rows, out_coords, out_shape, batch_size)
    leaves = [feats, conv1.weight, conv2.weight, bn1.weight, bn1.bias, bn2.weight, bn2.bias]
    assert_close_with_grads(out, oracle, leaves, rtol=1e-7, atol=1e-9)
