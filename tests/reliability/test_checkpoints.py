"""Checkpoints and files: saves are atomic (a writer killed with SIGKILL mid-save, raising mid-write or hitting a
full-disk error leaves the previous checkpoint intact and loadable); state dicts round-trip bit for bit (sparse, graph and dense modules, the SECOND
backbone with its BatchNorm statistics, the spconv drop-in); a spconv-format checkpoint loads into the
drop-in and into native modules with the same outputs (and spconv's, when installed); truncated or corrupt
checkpoints, point files (.bin, .pcd.bin, PCD ascii / binary / binary_compressed, PLY ascii / binary) and
Planetoid files raise clear errors naming the file, at every cut tested.

Limits no reader can lift, stated rather than tested around: a raw ``.bin`` cut at a whole number of
records is a valid shorter scan, and a changed byte in binary PCD / PLY float data is undetectable (those
formats carry no checksum). torch checkpoints do carry CRCs, which ``torch.load`` ignores (a flipped byte in a
tensor loads silently); the detector's ``load_checkpoint`` checks them.
"""
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import irregconv.nn as icnn
import irregconv.nn.dense as dense
from irregconv import SparseTensor
from irregconv.apps.detector_training import load_checkpoint, save_checkpoint
from irregconv.compat import spconv as shim
from irregconv.compat.spconv import load_spconv_state_dict
from irregconv.data import Planetoid, generate_scene, read_points, voxelize
from irregconv.io import atomic_write, save_atomic, write_text_atomic
from irregconv.models.detector import CenterPointDetector, DetectorConfig
from irregconv.models.second import SECONDBackbone8x, spconv_second_backbone_8x
from irregconv.testing import data_path, random_coords, with_data, with_package

CUTS = (0.0, 0.001, 0.05, 0.3, 0.5, 0.8, 0.95, 0.999)   # fractions of a file kept


def _saved(state_dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def _loaded(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=True)


def _randomise_batch_norms(module):
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
    return module


def _assert_round_trip(make, run):
    """``make(seed)`` modules: one's state dict saved and loaded into another gives equal tensors and outputs."""
    source, target = make(0), make(1)
    target.load_state_dict(_loaded(_saved(source.state_dict())))
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(run(source.eval()), run(target.eval()))
    return target


def _seeded(factory):
    def make(seed):
        torch.manual_seed(seed)
        return _randomise_batch_norms(factory())
    return make


COORDS = random_coords(60, (10, 10, 10), 2, torch.Generator().manual_seed(0))
SPARSE = {
    "SubMConv3d": lambda: icnn.SubMConv3d(3, 4, 3, groups=1),
    "SubMConv3d grouped": lambda: icnn.SubMConv3d(4, 4, 3, groups=2),
    "SparseConv3d": lambda: icnn.SparseConv3d(3, 4, 3, 2, 1),
    "SparseConvTranspose3d": lambda: icnn.SparseConvTranspose3d(3, 4, 3, 2, 1),
    "SparseDepthwiseSeparableConv3d": lambda: icnn.SparseDepthwiseSeparableConv3d(3, 4),
    "SparseCondConv3d": lambda: icnn.SparseCondConv3d(3, 4),
    "SparseDynamicConv3d": lambda: icnn.SparseDynamicConv3d(3, 4),
    "SparseSequential": lambda: icnn.SparseSequential(icnn.SubMConv3d(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                                      icnn.SparseConv3d(4, 4, 3, 2, 1),
                                                      icnn.SparseInverseConv3d(4, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(SPARSE))
def test_sparse_module_state_dict_round_trip(name):
    channels = 4 if name == "SubMConv3d grouped" else 3
    x = SparseTensor(torch.randn(COORDS.size(0), channels), COORDS, (10, 10, 10), 2)
    _assert_round_trip(_seeded(SPARSE[name]), lambda m: m(x).feats)


@pytest.mark.slow
def test_backbone_state_dict_round_trip_after_a_training_step():
    x = SparseTensor(torch.rand(600, 4), random_coords(300, (41, 32, 32), 2, torch.Generator().manual_seed(1)),
                     (41, 32, 32), 2)

    def make(seed):
        torch.manual_seed(seed)
        net = SECONDBackbone8x(4)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
        net(x).feats.square().mean().backward()   # moves the weights and BatchNorm statistics off their start
        optimizer.step()
        return net

    loaded = _assert_round_trip(make, lambda m: m(x).feats)
    assert int(loaded.state_dict()["conv1.0.1.num_batches_tracked"]) == 1


@pytest.mark.parametrize("name", ["GCNConv", "GraphConv", "SAGEConv", "GINConv", "EdgeConv"])
def test_graph_layer_state_dict_round_trip(name):
    factory = {"GCNConv": lambda: icnn.GCNConv(3, 4), "GraphConv": lambda: icnn.GraphConv(3, 4),
               "SAGEConv": lambda: icnn.SAGEConv(3, 4), "GINConv": lambda: icnn.GINConv(torch.nn.Linear(3, 4)),
               "EdgeConv": lambda: icnn.EdgeConv(torch.nn.Linear(6, 4))}[name]
    x, edges = torch.randn(6, 3), torch.tensor([[0, 1, 2, 3, 4, 5, 1], [1, 2, 3, 4, 5, 0, 4]])
    _assert_round_trip(_seeded(factory), lambda m: m(x, edges))


@pytest.mark.parametrize("name", sorted(dense.__all__))
def test_dense_variant_state_dict_round_trip(name):
    special = {"ChannelShuffle": lambda: dense.ChannelShuffle(4),
               "OctaveConv2d": lambda: dense.OctaveConv2d(48, 48, alpha_in=0.0, alpha_out=0.0)}
    factory = special.get(name, lambda: getattr(dense, name)(48, 48))
    x = torch.randn(2, 48, 6, 6, 6) if name.endswith("3d") else torch.randn(2, 48, 8, 8)
    _assert_round_trip(_seeded(factory), lambda m: m(x))


# ------------------------------------------------------------------------------------------ atomic saves

def _state(seed, megabytes=1):
    gen = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(megabytes * 2 ** 18, generator=gen), "step": torch.tensor(seed)}


def _assert_state(path, seed):
    state = torch.load(path, weights_only=True)
    assert int(state["step"]) == seed and torch.equal(state["weight"], _state(seed, state["weight"].numel() // 2 ** 18)["weight"])


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _child(code: str, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_save_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    """A child process writes half of a 64 MB checkpoint through atomic_write, then is killed with SIGKILL: the
    previous checkpoint loads intact (a torn temporary file may remain beside it, never in its place)."""
    path = tmp_path / "model.pt"
    save_atomic(_state(1), path)
    child = _child("""
        import io, sys, time, torch
        from irregconv.io import atomic_write
        buffer = io.BytesIO()
        torch.save({"weight": torch.randn(2 ** 24), "step": torch.tensor(2)}, buffer)
        data = buffer.getvalue()
        with atomic_write(sys.argv[1]) as f:
            f.write(data[:len(data) // 2])
            f.flush()
            print("half written", flush=True)
            time.sleep(600)
            f.write(data[len(data) // 2:])
    """, path)
    try:
        assert child.stdout.readline().strip() == "half written", child.stderr.read()
        torn = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(torn) == 1 and torn[0].stat().st_size > 2 ** 25   # the new bytes went to the temporary file
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    _assert_state(path, 1)


def test_a_writer_raising_midway_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.pt"
    save_atomic(_state(1), path)
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path) as f:
            torch.save(_state(2), f)
            raise RuntimeError("interrupted")
    with pytest.raises(AttributeError, match="Can't (pickle|get local object)"):
        save_atomic({"weight": torch.zeros(3), "hook": lambda: None}, path)   # torch.save fails part-way
    _assert_state(path, 1)
    assert _leftovers(tmp_path, {"model.pt"}) == []
    save_atomic(_state(3), path)   # the next good save replaces it
    _assert_state(path, 3)
    assert _leftovers(tmp_path, {"model.pt"}) == []


@pytest.mark.parametrize("writer", ["save_atomic", "save_checkpoint"])
def test_a_full_disk_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, writer):
    """The kernel refuses writes past a file-size limit (RLIMIT_FSIZE, EFBIG) as a full disk does (ENOSPC): the
    OSError reaches the caller, the old checkpoint stays loadable, nothing is left behind."""
    path = tmp_path / "model.pt"
    if writer == "save_atomic":
        save_atomic(_state(1), path)
    else:
        torch.manual_seed(1)
        save_checkpoint(CenterPointDetector(DetectorConfig(neck_channels=8)), path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    child = _child("""
        import resource, signal, sys, torch
        from irregconv.apps.detector_training import save_checkpoint
        from irregconv.io import save_atomic
        from irregconv.models.detector import CenterPointDetector, DetectorConfig
        model = CenterPointDetector(DetectorConfig(neck_channels=16))   # a bigger checkpoint than the first
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 16, 2 ** 16))
        try:
            if sys.argv[2] == "save_atomic":
                save_atomic({"weight": torch.randn(2 ** 20)}, sys.argv[1])
            else:
                save_checkpoint(model, sys.argv[1])
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
    """, path, writer)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert out.split() == ["OSError", str(errno.EFBIG)], out   # the OSError itself, not torch's bare RuntimeError
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    if writer == "save_atomic":
        _assert_state(path, 1)
    else:
        load_checkpoint(path)


def test_write_text_atomic_and_bad_arguments(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "config.json", '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n' and _leftovers(path.parent, {"config.json"}) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(ValueError, match=r"atomic_write: mode must be one of \('wb', 'w'\), got 'ab'"):
        with atomic_write(tmp_path / "x", "ab"):
            pass
    with pytest.raises(TypeError, match="write_text_atomic: text must be a str, got bytes"):
        write_text_atomic(tmp_path / "x", b"bytes")
    assert not (tmp_path / "x").exists()


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


# -------------------------------------------------------------------------------- spconv-format checkpoints

def _scene_voxels():
    return voxelize(generate_scene(2).points, (0.1, 0.1, 0.1), (0, -6.4, -3, 12.8, 6.4, 1.1))


def _sorted_rows(coords, feats):
    """Rows sorted by coordinates (spconv's strided outputs come in its own order)."""
    key = coords.long()
    order = torch.from_numpy(np.lexsort(key.t().flip(0).numpy()))
    return coords[order], feats[order]


def test_spconv_format_checkpoint_loads_into_the_drop_in_and_native_modules(tmp_path):
    """A state dict in spconv's layout (KRSC weights, OpenPCDet names), saved to disk, loads unchanged into the
    drop-in backbone and through load_spconv_state_dict into the native one: same outputs, bit for bit."""
    torch.manual_seed(0)
    drop_in = _randomise_batch_norms(spconv_second_backbone_8x(shim, 4)).eval()
    path = tmp_path / "spconv_backbone.pth"
    torch.save(drop_in.state_dict(), path)
    assert drop_in.state_dict()["conv_input.0.0.weight"].shape == (16, 3, 3, 3, 4)   # [C_out, *k, C_in]
    again = spconv_second_backbone_8x(shim, 4).eval()
    again.load_state_dict(torch.load(path, weights_only=True), strict=True)
    native = SECONDBackbone8x(4).eval()
    result = load_spconv_state_dict(native, torch.load(path, weights_only=True))
    assert not result.missing_keys and not result.unexpected_keys
    v = _scene_voxels()
    with torch.no_grad():
        a = drop_in(shim.SparseConvTensor(v.feats, v.coords, list(v.spatial_shape), 1))
        b = again(shim.SparseConvTensor(v.feats, v.coords, list(v.spatial_shape), 1))
        c = native(v.to_sparse_tensor())
    assert torch.equal(a.indices, c.coords) and torch.equal(a.features, b.features)
    assert torch.equal(a.features, c.feats)


@with_package("spconv")
def test_checkpoint_saved_by_spconv_loads_and_gives_spconv_outputs(tmp_path):
    import spconv.pytorch as spconv
    torch.manual_seed(0)
    real = _randomise_batch_norms(spconv_second_backbone_8x(spconv, 4)).eval()
    path = tmp_path / "from_spconv.pth"
    torch.save(real.state_dict(), path)
    ours = spconv_second_backbone_8x(shim, 4).eval()
    ours.load_state_dict(torch.load(path, weights_only=True), strict=True)
    v = _scene_voxels()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # spconv's CPU path is deterministic (and correct) on one thread only
    try:
        with torch.no_grad():
            want = real(spconv.SparseConvTensor(v.feats, v.coords, list(v.spatial_shape), 1))
            got = ours(shim.SparseConvTensor(v.feats, v.coords, list(v.spatial_shape), 1))
    finally:
        torch.set_num_threads(threads)
    want_coords, want_feats = _sorted_rows(want.indices, want.features)
    got_coords, got_feats = _sorted_rows(got.indices, got.features)
    assert torch.equal(got_coords, want_coords.int())
    torch.testing.assert_close(got_feats, want_feats, rtol=1e-4, atol=1e-4)


def test_checkpoint_of_another_architecture_is_refused_by_name():
    native = SECONDBackbone8x(4)
    wrong = SECONDBackbone8x(5).state_dict()
    with pytest.raises(RuntimeError, match=r"size mismatch for conv_input.0.0.weight: .*torch.Size\(\[27, 5, 16\]\)"):
        native.load_state_dict(wrong)
    with pytest.raises(RuntimeError, match="size mismatch for conv_input.0.0.weight"):
        load_spconv_state_dict(native, spconv_second_backbone_8x(shim, 5).state_dict())


# ------------------------------------------------------------------------------- truncated checkpoints

@pytest.mark.parametrize("keep", CUTS)
def test_torch_load_of_a_truncated_checkpoint_raises(keep):
    """torch itself refuses every cut, though not always clearly: a RuntimeError naming a corrupt archive when the
    zip directory at the end is gone, a bare ValueError ("negative seek value") when only the last bytes are,
    an EOFError for an empty file. The detector's load_checkpoint turns all of them into one ValueError."""
    data = _saved(SECONDBackbone8x(4).state_dict())
    with pytest.raises((RuntimeError, ValueError, EOFError)) as info:
        _loaded(data[:int(len(data) * keep)])
    if isinstance(info.value, RuntimeError):
        assert "PytorchStreamReader failed reading zip archive" in str(info.value)


@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(CenterPointDetector(DetectorConfig()), tmp_path_factory.mktemp("detector") / "model.pt")


def _copy_checkpoint(checkpoint, folder, data: bytes):
    path = folder / "copy.pt"
    path.write_bytes(data)
    shutil.copy(checkpoint.with_name(checkpoint.name + ".json"), folder / "copy.pt.json")
    return path


@pytest.mark.parametrize("keep", CUTS)
def test_detector_loader_refuses_a_truncated_checkpoint(detector_checkpoint, tmp_path, keep):
    data = detector_checkpoint.read_bytes()
    path = _copy_checkpoint(detector_checkpoint, tmp_path, data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"load_checkpoint: .*copy.pt is (truncated or not a torch|corrupt)"):
        load_checkpoint(path)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_detector_loader_refuses_a_flipped_byte(detector_checkpoint, tmp_path, where):
    data = bytearray(detector_checkpoint.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path = _copy_checkpoint(detector_checkpoint, tmp_path, bytes(data))
    with pytest.raises(ValueError, match=r"load_checkpoint: .*copy.pt (is corrupt: record .* fails the zip CRC|is "
                                         r"truncated or not a torch checkpoint)"):
        load_checkpoint(path)


def test_detector_loader_round_trip_and_mismatched_config(detector_checkpoint, tmp_path):
    torch.manual_seed(0)
    original = CenterPointDetector(DetectorConfig())
    loaded = load_checkpoint(detector_checkpoint)
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    other = save_checkpoint(CenterPointDetector(DetectorConfig(neck_channels=32)), tmp_path / "other.pt")
    shutil.copy(detector_checkpoint.with_name("model.pt.json"), tmp_path / "other.pt.json")
    with pytest.raises(ValueError, match=r"load_checkpoint: the tensors in .*other.pt do not fit its config"):
        load_checkpoint(other)


# ------------------------------------------------------------------------------------------ point files

SCAN = np.random.default_rng(0).random((30, 5)).astype(np.float32)


@pytest.mark.parametrize("suffix, width", [(".bin", 4), (".pcd.bin", 5)])
def test_every_cut_of_a_raw_scan_is_refused_or_a_whole_record_prefix(tmp_path, suffix, width):
    data = SCAN[:, :width].tobytes()
    path = tmp_path / f"scan{suffix}"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        if cut % (4 * width):
            with pytest.raises(ValueError, match=f"read_points: .*scan{suffix} has {cut} bytes, not a multiple of "
                                                 f"{4 * width}"):
                read_points(path)
        else:   # a whole number of records: a valid shorter scan, the first points exactly
            np.testing.assert_array_equal(read_points(path), SCAN[:cut // (4 * width), :width])


def _open3d_files(folder):
    import open3d
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(SCAN[:, :3].astype(np.float64)))
    cloud.colors = open3d.utility.Vector3dVector(SCAN[:, 2:5].astype(np.float64))
    files = {}
    for name, options in (("ascii.pcd", dict(write_ascii=True)), ("binary.pcd", dict(compressed=False)),
                          ("compressed.pcd", dict(compressed=True)), ("ascii.ply", dict(write_ascii=True)),
                          ("binary.ply", dict())):
        open3d.io.write_point_cloud(str(folder / name), cloud, **options)
        files[name] = (folder / name).read_bytes()
    return files


@with_package("open3d")
def test_every_cut_of_pcd_and_ply_files_is_refused(tmp_path):
    """Every cut of a binary file is refused. An ASCII file cut inside its very last number keeps a shorter
    number that no reader can tell from a file without a final newline, so ASCII cuts stop at that number."""
    for name, data in _open3d_files(tmp_path).items():
        path = tmp_path / f"cut_{name}"
        whole = data.rstrip(b"\n")   # only a trailing newline may go: every value is still there
        last = max(whole.rfind(b" "), whole.rfind(b"\n")) + 1 if name.startswith("ascii") else len(whole) - 1
        for cut in sorted(set(np.linspace(0, last, 40).astype(int))):
            path.write_bytes(data[:cut])
            with pytest.raises(ValueError, match=f"read_points: .*cut_{name}"):
                read_points(path)
        path.write_bytes(whole)
        np.testing.assert_allclose(read_points(path)[:, :3], SCAN[:, :3], atol=1e-6)   # ASCII: 7 digits


@with_package("open3d")
def test_a_damaged_value_in_ascii_point_files_is_refused(tmp_path):
    """open3d stops parsing a damaged ASCII number early and keeps the wrong value; read_points refuses it."""
    for name in ("ascii.pcd", "ascii.ply"):
        data = _open3d_files(tmp_path)[name]
        body = data.index(b"DATA ascii\n" if name.endswith("pcd") else b"end_header\n") + 11
        path = tmp_path / f"bad_{name}"
        for offset in range(body, len(data) - 1, 29):
            damaged = bytearray(data)
            damaged[offset] ^= 0xFF
            path.write_bytes(bytes(damaged))
            with pytest.raises(ValueError, match=f"read_points: .*bad_{name} is (corrupt|truncated)"):
                read_points(path)


# ------------------------------------------------------------------------------------------- Planetoid

@with_data("planetoid", "cora")
@pytest.mark.parametrize("suffix", ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"])
def test_every_truncated_planetoid_file_is_refused(tmp_path, suffix):
    raw = tmp_path / "cora" / "raw"
    shutil.copytree(data_path("planetoid", "cora", "raw"), raw)
    data = (raw / f"ind.cora.{suffix}").read_bytes()
    for keep in CUTS:
        (raw / f"ind.cora.{suffix}").write_bytes(data[:int(len(data) * keep)])
        with pytest.raises(ValueError, match=f"Planetoid: .*(ind.cora.{suffix} is truncated or corrupt|do not fit)"):
            Planetoid(tmp_path, "cora", download=False)
