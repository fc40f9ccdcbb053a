"""Bad input at the data entry points and the command line: ``voxelize`` (cases beyond
tests/data/test_voxelize.py), ``read_points`` arguments, ``Planetoid`` and the ``irregconv`` CLI, which must
answer a missing, truncated or corrupt file with one line naming it (no traceback). Truncated files of every
format are in test_checkpoints.py."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from irregconv.cli import main
from irregconv.data import Planetoid, read_points, voxelize
from irregconv.testing import data_path, with_data

POINTS = torch.rand(10, 4)
VOXEL, RANGE = (0.1, 0.1, 0.1), (0, 0, 0, 1, 1, 1)


# -------------------------------------------------------------------------------------------- voxelize

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(voxel_size=(np.nan, 0.1, 0.1)), ValueError, r"voxel_size must be 3 positive finite numbers .* got \(nan"),
    (dict(voxel_size=("a", 0.1, 0.1)), TypeError, "voxel_size must be 3 numbers .dx, dy, dz."),
    (dict(voxel_size=None), TypeError, "voxel_size must be 3 numbers"),
    (dict(point_range=(0, 0, 0, 1, 1, np.inf)), ValueError, "point_range must be 6 finite numbers"),
    (dict(point_range="012345"), TypeError,
     "voxel_size must be 3 numbers .dx, dy, dz. and point_range 6 numbers .* got .* and '012345'"),
    (dict(point_range=(0, 0, 0, 1, 1, 0)), ValueError, r"point_range \(0, 0, 0, 1, 1, 0\) is empty or inverted on z"),
    # 1e-6 m voxels over a kilometre: a grid too large for int64 keys
    (dict(voxel_size=(1e-6,) * 3, point_range=(0, 0, 0, 1000, 1000, 1000)), ValueError,
     r"key space batch_size x spatial_shape .* more than 2\*\*62; use a coarser voxel size or a smaller point range"),
    (dict(points=POINTS.numpy().astype(np.int32)), TypeError, "points must be floating point, got torch.int32"),
    (dict(points=POINTS[:, 0]), ValueError, r"points must have shape \[N, F\] with F >= 3 .*got \[10\]"),
    (dict(points={"x": 1}), TypeError, r"points must be a float tensor or ndarray \[N, F\], got dict"),
    (dict(max_points_per_voxel=2.5), ValueError, "max_points_per_voxel must be None or a positive int, got 2.5"),
    (dict(batch=torch.zeros(10, dtype=torch.bool)), ValueError, r"batch must be an integer tensor \[N\] = \[10\]"),
])
def test_voxelize_bad_arguments(kwargs, error, match):
    args = dict(points=POINTS, voxel_size=VOXEL, point_range=RANGE)
    args.update(kwargs)
    with pytest.raises(error, match=f"voxelize: {match}" if "key space" not in match else match):
        voxelize(**args)


def test_voxelize_scans_on_different_devices():
    with pytest.raises(ValueError, match=r"voxelize: the scans are on several devices \['cpu', 'meta'\]; move them"):
        voxelize([POINTS, POINTS.to("meta")], VOXEL, RANGE)


# ----------------------------------------------------------------------------------------- read_points

@pytest.mark.parametrize("num_features, match", [
    (0, "num_features must be an int >= 3 .x, y, z first., got 0"),
    (2, "num_features must be an int >= 3"),
    (4.0, "num_features must be an int >= 3 .x, y, z first., got 4.0"),
    (True, "num_features must be an int >= 3 .x, y, z first., got True"),
])
def test_read_points_num_features(tmp_path, num_features, match):
    np.zeros((3, 4), np.float32).tofile(tmp_path / "scan.bin")
    with pytest.raises(ValueError, match=f"read_points: {match}"):
        read_points(tmp_path / "scan.bin", num_features=num_features)


def test_read_points_paths(tmp_path):
    with pytest.raises(TypeError, match="read_points: path must be a str or os.PathLike .e.g. pathlib.Path., got int"):
        read_points(5)
    (tmp_path / "folder.bin").mkdir()
    with pytest.raises(FileNotFoundError, match=r"read_points: no such file: .*folder.bin \(it is a directory\)"):
        read_points(tmp_path / "folder.bin")
    with pytest.raises(FileNotFoundError, match="read_points: no such file: .*missing.pcd"):
        read_points(str(tmp_path / "missing.pcd"))
    (tmp_path / "scan.pcd").write_text("not a pcd\n")
    with pytest.raises(ValueError, match="read_points: num_features applies to raw .bin / .pcd.bin files only"):
        read_points(tmp_path / "scan.pcd", num_features=4)
    np.save(tmp_path / "flat.npy", np.zeros(12, np.float32))
    with pytest.raises(ValueError, match=r"read_points: .*flat.npy holds an array of shape \(12,\) .* expected a "
                                         r"numeric \[N, F\] array with F >= 3"):
        read_points(tmp_path / "flat.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match="holds an array of shape .* and dtype <U1"):
        read_points(tmp_path / "text.npy")


# ------------------------------------------------------------------------------------------- Planetoid

@pytest.mark.parametrize("name", ["pubmed", None, ""])
def test_planetoid_name(tmp_path, name):
    with pytest.raises(ValueError, match=f"Planetoid: name must be one of .'cora', 'citeseer'., got {name!r}"):
        Planetoid(tmp_path, name)


def test_planetoid_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Planetoid: missing 8 file\(s\) of 'cora' in .*download disabled.*"
                                                r"ind.cora.x, ind.cora.tx"):
        Planetoid(tmp_path, "cora", download=False)


@with_data("planetoid", "cora")
@pytest.mark.parametrize("suffix", ["x", "graph", "ally", "test.index"])
def test_planetoid_garbage_file(tmp_path, suffix):
    raw = tmp_path / "cora" / "raw"
    shutil.copytree(data_path("planetoid", "cora", "raw"), raw)
    (raw / f"ind.cora.{suffix}").write_bytes(b"\x80\x04garbage\n" * 4)
    with pytest.raises(ValueError, match=f"Planetoid: .*ind.cora.{suffix} is truncated or corrupt"):
        Planetoid(tmp_path, "cora", download=False)


# ------------------------------------------------------------------------------------------------- CLI

def _fails(capsys, argv, match, code=None):
    """``irregconv <argv>`` exits with one line matching ``match`` (SystemExit's message, or argparse's
    usage error on stderr with exit code ``code``)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = exit_info.value.code if code is None else capsys.readouterr().err
    if code is not None:
        assert exit_info.value.code == code
    assert isinstance(message, str) and "Traceback" not in message
    assert re.search(match, message), message


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from irregconv.apps.detector_training import save_checkpoint
    from irregconv.models.detector import CenterPointDetector, DetectorConfig
    torch.manual_seed(0)
    return save_checkpoint(CenterPointDetector(DetectorConfig()), tmp_path_factory.mktemp("ckpt") / "detector.pt")


def test_cli_detect_missing_files(capsys, tmp_path, checkpoint):
    scan = tmp_path / "scan.bin"
    np.zeros((4, 4), np.float32).tofile(scan)
    _fails(capsys, ["detect", "--scan", str(scan), "--checkpoint", str(tmp_path / "none.pt")],
           r"irregconv detect: no checkpoint at .*none.pt; run `irregconv demo` first")
    _fails(capsys, ["detect", "--scan", str(tmp_path / "none.bin"), "--checkpoint", str(checkpoint)],
           r"irregconv detect: read_points: no such file: .*none.bin")


def test_cli_detect_truncated_files(capsys, tmp_path, checkpoint):
    scan = tmp_path / "scan.bin"
    scan.write_bytes(np.zeros((4, 4), np.float32).tobytes()[:-3])
    _fails(capsys, ["detect", "--scan", str(scan), "--checkpoint", str(checkpoint)],
           r"irregconv detect: read_points: .*scan.bin has 61 bytes, not a multiple of 16")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[:1000])
    shutil.copy(checkpoint.with_name(checkpoint.name + ".json"), tmp_path / "cut.pt.json")
    np.zeros((4, 4), np.float32).tofile(scan)
    _fails(capsys, ["detect", "--scan", str(scan), "--checkpoint", str(cut)],
           r"irregconv detect: load_checkpoint: .*cut.pt is truncated or not a torch checkpoint")
    (tmp_path / "cut.pt.json").write_text(json.dumps({"voxel_size": "big"}))
    _fails(capsys, ["detect", "--scan", str(scan), "--checkpoint", str(cut)],
           r"irregconv detect: load_checkpoint: .*cut.pt.json is not a valid detector config")


@pytest.mark.parametrize("argv, match", [
    (["cora", "--device", "nodevice", "--dataset", "synthetic"], "irregconv cora: --device 'nodevice' is not usable"),
    (["cora", "--seeds", "0"], "irregconv cora: --seeds and --epochs must be >= 1, got 0 and 200"),
    (["cora", "--epochs", "-1"], "irregconv cora: --seeds and --epochs must be >= 1, got 10 and -1"),
])
def test_cli_cora_arguments(capsys, argv, match):
    _fails(capsys, argv, match)


def test_cli_cora_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is usable")
    _fails(capsys, ["cora", "--device", "cuda", "--dataset", "synthetic"],
           r"irregconv cora: --device 'cuda' is not usable here \(Torch not compiled with CUDA enabled\); use cpu")


@with_data("planetoid", "cora")
def test_cli_cora_corrupt_data(capsys, tmp_path):
    raw = tmp_path / "cora" / "raw"
    shutil.copytree(data_path("planetoid", "cora", "raw"), raw)
    (raw / "ind.cora.graph").write_bytes((raw / "ind.cora.graph").read_bytes()[:100])
    _fails(capsys, ["cora", "--root", str(tmp_path), "--dataset", "cora", "--epochs", "1", "--seeds", "1"],
           r"irregconv cora: Planetoid: .*ind.cora.graph is truncated or corrupt")


@pytest.mark.parametrize("argv, match", [
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    (["cora", "--dataset", "pubmed"], "argument --dataset: invalid choice: 'pubmed'"),
    (["cora", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["detect"], "the following arguments are required: --scan"),
    (["bench", "nothing"], "argument benchmark: invalid choice: 'nothing'"),
])
def test_cli_usage_errors(capsys, argv, match):
    _fails(capsys, argv, match, code=2)
