"""OpenPCDet-style code (``models/openpcdet_style.py``) on irregconv's spconv drop-in against the same file on
spconv 2.3.8: the voxel generator fed a cumm tensorview, VoxelBackBone8x and UNetV2 on real KITTI scans,
VoxelNeXt's in-place and reassigned indices, ``find_all_spconv_keys`` and the spconv 1.x checkpoint loading,
a training step, and the file run unchanged in a child process after ``install()``."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from irregconv.data import read_points
from irregconv.testing import assert_scaled_close, data_path, with_data, with_package

pytestmark = with_package("spconv", "cumm")
needs_kitti = with_data("lidar")

# OpenPCDet's KITTI voxel settings on a crop of the range (11.2 m x 12.8 m), to keep the tests fast
POINT_CLOUD_RANGE = [0.0, -6.4, -3.0, 11.2, 6.4, 1.0]
VOXEL_SIZE = [0.05, 0.05, 0.1]
SCANS = ["kitti_training_000000.bin", "kitti_training_000001.bin"]
# float32 through a whole backbone: features within 1e-4 of the output's largest magnitude (spconv's own
# float32 error on KITTI is ~1e-5 of the scale, measured against float64 in tests/compat/test_spconv.py)


def scan_batch(module, scans=SCANS):
    """OpenPCDet's data path for ``scans``: range mask, voxel generator, collation, MeanVFE."""
    processor = module.DataProcessor(POINT_CLOUD_RANGE, VOXEL_SIZE, max_points_per_voxel=5, max_voxels=40000)
    batch = module.collate_batch([processor.forward({"points": read_points(data_path("lidar", scan))})
                                  for scan in scans])
    return module.MeanVFE(4)(batch), processor.grid_size


def assert_same_sparse(got, expected, by_coordinates):
    assert got.spatial_shape == list(expected.spatial_shape) and got.batch_size == expected.batch_size
    got_feats, got_idx = by_coordinates(got.features, got.indices)
    exp_feats, exp_idx = by_coordinates(expected.features, expected.indices)
    assert torch.equal(got_idx, exp_idx)
    assert_scaled_close(got_feats, exp_feats)


def test_version_probe_and_voxel_generator_choice(load_models):
    theirs, ours = load_models("openpcdet_style")
    assert ours.SPCONV_VER == theirs.SPCONV_VER == 2
    assert ours.VoxelGenerator.__module__.startswith("irregconv.")
    assert ours.spconv.SparseConvTensor.__module__.startswith("irregconv.")
    assert theirs.spconv.SparseConvTensor.__module__.startswith("spconv.")


@needs_kitti
@pytest.mark.parametrize("scan", SCANS)
def test_voxel_generator_on_cumm_tensorview_matches_spconv(load_models, scan):
    """Voxels, zyx coordinates and point counts bit for bit, read back with ``.numpy()``."""
    points = read_points(data_path("lidar", scan))
    outputs = []
    for module in load_models("openpcdet_style"):
        processor = module.DataProcessor(POINT_CLOUD_RANGE, VOXEL_SIZE, max_points_per_voxel=5, max_voxels=40000)
        outputs.append(processor.forward({"points": points.copy()}))
    theirs, ours = outputs
    for key in ("voxels", "voxel_coords", "voxel_num_points"):
        assert isinstance(ours[key], np.ndarray) and ours[key].dtype == theirs[key].dtype, key
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    assert len(ours["voxel_coords"]) > 1000


@needs_kitti
def test_voxel_backbone_8x_matches_spconv_on_kitti(load_models, as_spconv_reference, twins,
                                                    by_coordinates):
    pair = load_models("openpcdet_style")
    (batch_theirs, grid_size), (batch_ours, _) = (scan_batch(module) for module in pair)
    theirs, ours = twins(pair, lambda m: m.VoxelBackBone8x({}, 4, grid_size))
    with as_spconv_reference(theirs):
        expected = theirs(batch_theirs)
    with torch.no_grad():
        got = ours(batch_ours)
    assert got["encoded_spconv_tensor_stride"] == 8
    # submanifold outputs keep the input's order: compared row by row
    assert torch.equal(got["multi_scale_3d_features"]["x_conv1"].indices,
                       expected["multi_scale_3d_features"]["x_conv1"].indices)
    assert_scaled_close(got["multi_scale_3d_features"]["x_conv1"].features,
                          expected["multi_scale_3d_features"]["x_conv1"].features)
    for name in ("x_conv2", "x_conv3", "x_conv4"):
        assert_same_sparse(got["multi_scale_3d_features"][name], expected["multi_scale_3d_features"][name],
                           by_coordinates)
    assert_same_sparse(got["encoded_spconv_tensor"], expected["encoded_spconv_tensor"], by_coordinates)
    assert_scaled_close(got["encoded_spconv_tensor"].dense(), expected["encoded_spconv_tensor"].dense())


@needs_kitti
def test_unet_v2_returns_to_the_input_voxels_as_spconv(load_models, as_spconv_reference, twins):
    """Inverse convolutions found by indice key bring the features back to the input voxels, in their order."""
    pair = load_models("openpcdet_style")
    (batch_theirs, grid_size), (batch_ours, _) = (scan_batch(module, SCANS[:1]) for module in pair)
    theirs, ours = twins(pair, lambda m: m.UNetV2({}, 4, grid_size))
    with as_spconv_reference(theirs):
        expected = theirs(batch_theirs)
    with torch.no_grad():
        got = ours(batch_ours)
    assert torch.equal(got["point_coords"], batch_ours["voxel_coords"].int())
    assert torch.equal(got["point_coords"], expected["point_coords"])
    assert_scaled_close(got["point_features"], expected["point_features"])


@needs_kitti
def test_voxelnext_indices_scaled_in_place_and_reassigned_as_spconv(load_models, as_spconv_reference,
                                                                    twins, by_coordinates):
    pair = load_models("openpcdet_style")
    (batch_theirs, grid_size), (batch_ours, _) = (scan_batch(module, SCANS[:1]) for module in pair)
    backbones = twins(pair, lambda m: m.VoxelBackBone8x({}, 4, grid_size))
    heads = twins(pair, lambda m: m.VoxelNeXtStyleBEV(), seed=1)
    with as_spconv_reference(backbones[0]), as_spconv_reference(heads[0]):
        expected = heads[0](backbones[0](batch_theirs)["multi_scale_3d_features"]["x_conv4"])
    with torch.no_grad():
        got = heads[1](backbones[1](batch_ours)["multi_scale_3d_features"]["x_conv4"])
    assert got.spatial_shape == expected.spatial_shape and got.indices.shape[1] == 3
    assert_same_sparse(got, expected, by_coordinates)


def test_find_all_spconv_keys_and_spconv1_checkpoint(load_models):
    """The traversal finds the same convolution weights on both, and a checkpoint in spconv 1.x's
    ``[k1, k2, k3, C_in, C_out]`` layout loads through OpenPCDet's shape fix-up into the same weights."""
    pair = load_models("openpcdet_style")
    theirs, ours = (module.UNetV2({}, 4, np.array([224, 256, 40])) for module in pair)
    keys = pair[1].find_all_spconv_keys(ours)
    assert keys == pair[0].find_all_spconv_keys(theirs)
    assert keys == {name for name, value in theirs.state_dict().items() if value.dim() == 5}
    assert len(keys) == 25
    old = {key: value.permute(1, 2, 3, 4, 0) if key in keys else value for key, value in theirs.state_dict().items()}
    _, converted = pair[1].load_params_from_state_dict(ours, old)
    assert keys <= set(converted)
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


@needs_kitti
def test_training_step_on_the_drop_in(load_models):
    """A detector training step: every parameter gets a finite gradient, BatchNorm statistics move, and an
    SGD step lowers the loss."""
    module = load_models("openpcdet_style")[1]
    batch, grid_size = scan_batch(module, SCANS[:1])
    model = module.VoxelBackBone8x({}, 4, grid_size).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loss_of(features):
        out = model(dict(batch, voxel_features=features))["encoded_spconv_tensor"].dense()
        return out.square().mean()

    loss = loss_of(batch["voxel_features"])
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert model.conv_input[1].num_batches_tracked.item() == 1
    optimizer.step()
    with torch.no_grad():
        assert loss_of(batch["voxel_features"]) < loss


CHILD = """
import json, sys
import numpy as np
import torch
from irregconv.compat import spconv as drop_in
drop_in.install()
import runpy
ns = runpy.run_path(sys.argv[1])
processor = ns["DataProcessor"]({range}, {voxel_size}, max_points_per_voxel=5, max_voxels=40000)
points = np.fromfile(sys.argv[2], dtype="float32").reshape(-1, 4)
batch = ns["MeanVFE"](4)(ns["collate_batch"]([processor.forward({{"points": points}})]))
model = ns["VoxelBackBone8x"]({{}}, 4, processor.grid_size)
model.load_state_dict(torch.load(sys.argv[3]))
with torch.no_grad():
    out = model.eval()(batch)["encoded_spconv_tensor"]
torch.save({{"features": out.features, "indices": out.indices, "voxel_coords": batch["voxel_coords"]}}, sys.argv[4])
import spconv, spconv.pytorch, spconv.utils
print(json.dumps({{"version": spconv.__version__, "modules": [m.__name__ for m in (spconv, spconv.pytorch, spconv.utils)],
                  "conv": type(model.conv_input[0]).__module__}}))
"""


@needs_kitti
def test_model_file_runs_unchanged_in_a_child_process(load_models, as_spconv_reference, randomize_norms,
                                                      by_coordinates, tmp_path):
    """``python -c "install(); runpy.run_path(model file)"``: the file's own ``import spconv`` lines resolve
    to the drop-in, and the backbone gives spconv's output for spconv's state dict."""
    theirs_module = load_models("openpcdet_style")[0]
    batch, grid_size = scan_batch(theirs_module, SCANS[:1])
    theirs = randomize_norms(theirs_module.VoxelBackBone8x({}, 4, grid_size), 0).eval()
    torch.save(theirs.state_dict(), tmp_path / "state.pt")
    with as_spconv_reference(theirs):
        expected = theirs(batch)["encoded_spconv_tensor"]
    model_file = os.path.join(os.path.dirname(__file__), "models", "openpcdet_style.py")
    child = textwrap.dedent(CHILD).format(range=POINT_CLOUD_RANGE, voxel_size=VOXEL_SIZE)
    result = subprocess.run([sys.executable, "-c", child, model_file, str(data_path("lidar", SCANS[0])),
                             str(tmp_path / "state.pt"), str(tmp_path / "out.pt")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == "2.3.8"
    assert all(name.startswith("irregconv.") for name in report["modules"]), report
    assert report["conv"].startswith("irregconv."), report
    got = torch.load(tmp_path / "out.pt")
    assert torch.equal(got["voxel_coords"], batch["voxel_coords"])
    got_feats, got_idx = by_coordinates(got["features"], got["indices"])
    exp_feats, exp_idx = by_coordinates(expected.features, expected.indices)
    assert torch.equal(got_idx, exp_idx)
    assert_scaled_close(got_feats, exp_feats)
