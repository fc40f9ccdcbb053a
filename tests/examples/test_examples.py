"""Every script in examples/ runs with small sizes (in a subprocess, as a user would run it)."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import irregconv.nn.dense as dense
from irregconv.testing import data_path, with_data, with_package

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args, timeout=300):
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _load(name):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_voxelize_and_run_on_a_synthetic_scene():
    stdout = run_example("voxelize_and_run.py", "--voxel-size", 0.2, 0.2, 0.2, "--range", 0, -16, -3, 32, 16, 2,
                         "--repeat", 1)
    assert re.search(r"voxelize: [\d,]+ voxels on grid \(Z, Y, X\) = \(25, 160, 160\)", stdout)
    for stage in ("conv_input", "conv1", "conv2", "conv3", "conv4", "conv_out"):
        assert f"  {stage} " in stdout
    assert "output" in stdout and "BEV map (1, 128, 20, 20)" in stdout


@pytest.mark.slow
@with_data("lidar", "kitti_training_000000.bin")
def test_voxelize_and_run_on_real_kitti():
    scan = data_path("lidar", "kitti_training_000000.bin")
    stdout = run_example("voxelize_and_run.py", "--scan", scan, "--repeat", 1)
    # KITTI grid at 0.05 x 0.05 x 0.1 m; 41,281 voxels as spconv's PointToVoxel (see the data README / NOTES)
    assert "115,384 points" in stdout and "41,281 voxels on grid (Z, Y, X) = (40, 1600, 1408)" in stdout
    assert "BEV map (1, 128, 200, 176)" in stdout


@pytest.mark.slow
def test_spconv_drop_in_loads_a_spconv_format_checkpoint(tmp_path):
    torch.manual_seed(0)
    state = _load("spconv_drop_in.py").SparseBackbone().state_dict()
    torch.save(state, tmp_path / "ck.pt")
    stdout = run_example("spconv_drop_in.py", "--checkpoint", tmp_path / "ck.pt")
    assert f"loaded {tmp_path / 'ck.pt'}: first conv weight [16, 3, 3, 3, 4]" in stdout
    assert "dense output [1, 64, 3, 80, 80]" in stdout and "max |irregconv - spconv|" not in stdout


@pytest.mark.slow
@with_package("spconv")
def test_spconv_drop_in_matches_spconv():
    stdout = run_example("spconv_drop_in.py", "--seed", 1)
    assert "spconv saved its state dict" in stdout
    error = float(re.search(r"max \|irregconv - spconv\| = (\S+)", stdout).group(1))
    assert error <= 1e-4


@pytest.mark.slow
def test_cora_gcn_on_the_synthetic_graph():
    stdout = run_example("cora_gcn.py", "--dataset", "synthetic", "--epochs", 60)
    accuracy = float(re.search(r"test accuracy (\S+) at epoch", stdout).group(1))
    assert accuracy > 0.7


@pytest.mark.slow
@with_data("planetoid", "cora", "raw", "ind.cora.x")
def test_cora_gcn_on_cora():
    stdout = run_example("cora_gcn.py", "--root", data_path("planetoid"), "--epochs", 100)
    assert stdout.startswith("cora: 2708 nodes, 10556 directed edges, 1433 features, 140 training labels")
    assert float(re.search(r"test accuracy (\S+) at epoch", stdout).group(1)) > 0.75


def test_dense_variants_tour_lists_every_variant():
    stdout = run_example("dense_variants_tour.py", "--batch", 1, "--channels", 48, "--size", 8)
    assert f"{len(dense.__all__)} dense variants on a batch [1, 48, 8, 8]" in stdout
    build = _load("dense_variants_tour.py").build
    for name in dense.__all__:
        row = re.search(rf"^{name} +([\d,]+) +([\d.]+)  (\[[\d, +\[\]]*\])", stdout, re.MULTILINE)
        assert row is not None, name
        assert int(row.group(1).replace(",", "")) == sum(p.numel() for p in build(name, 48).parameters()), name
        assert row.group(3).startswith("[1, ")


@pytest.mark.slow
def test_ddp_train_single_process(tmp_path):
    save = tmp_path / "out" / "model.pt"
    stdout = run_example("ddp_train.py", "--voxel-size", 0.2, 0.2, 0.2, "--range", 0, -8, -3, 16, 8, 2, "--steps", 2,
                         "--batch", 2, "--threads", 1, "--save", save)
    assert "step 2/2" in stdout and "over 1 process(es)" in stdout and f"saved {save}" in stdout
    state = torch.load(save, weights_only=True)   # written atomically: the file and nothing beside it
    assert all(v.device.type == "cpu" for v in state.values()) and [p.name for p in save.parent.iterdir()] == ["model.pt"]
