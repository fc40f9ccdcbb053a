"""The data root and ``python -m irregconv.data.fetch``: the manifest's checksums are those of the real copies;
downloaded files (under the names the original downloads give them) are found, checked, copied or linked into
the layout irregconv reads; a damaged file is refused by name and never replaces anything."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from irregconv.apps.cora import default_root
from irregconv.cli import main as cli_main
from irregconv.data import DATASETS, Planetoid, data_root
from irregconv.data.datasets import ChecksumError, file_sha256, lay_out
from irregconv.testing import data_path, with_data

KITTI_DOWNLOAD = {  # the real KITTI layout: training/{velodyne,calib,label_2}/<frame>
    "training/velodyne/000000.bin": "lidar/kitti_training_000000.bin",
    "training/calib/000000.txt": "lidar/kitti_training_000000_calib.txt",
    "training/label_2/000000.txt": "lidar/kitti_training_000000_label_2.txt",
    "training/velodyne/000001.bin": "lidar/kitti_training_000001.bin",
    "training/calib/000001.txt": "lidar/kitti_training_000001_calib.txt",
    "training/label_2/000001.txt": "lidar/kitti_training_000001_label_2.txt",
}


def fetch(*args):
    return subprocess.run([sys.executable, "-m", "irregconv.data.fetch", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def _download_kitti(folder: Path) -> Path:
    """A folder laid out as KITTI's own download, with the real frames, plus an unrelated test frame."""
    for name, ours in KITTI_DOWNLOAD.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_path(ours), folder / name)
    (folder / "testing" / "velodyne").mkdir(parents=True)
    (folder / "testing" / "velodyne" / "000000.bin").write_bytes(b"\0" * 16)   # same name, other split
    return folder


def test_data_root_is_irregconv_data_else_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("IRREGCONV_DATA", str(tmp_path))
    assert data_root() == tmp_path and default_root() == tmp_path / "planetoid"
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("IRREGCONV_DATA")
        else:
            monkeypatch.setenv("IRREGCONV_DATA", unset)
        assert data_root() == Path("datasets") and default_root() == Path("datasets") / "planetoid"


@with_data("lidar")
@with_data("planetoid")
@with_data("pointclouds")
def test_manifest_checksums_are_those_of_the_real_copies():
    checked = 0
    for dataset in DATASETS.values():
        for entry in dataset.files:
            if entry.sha256 is not None:
                assert file_sha256(data_path(entry.path)) == entry.sha256, entry.path
                checked += 1
    assert checked == 29 and all(e.sha256 is None for e in DATASETS["pubmed"].files)


@with_data("lidar")
def test_fetch_lays_out_a_kitti_download(tmp_path):
    downloads = _download_kitti(tmp_path / "kitti")
    result = fetch("kitti", "--root", tmp_path / "root", "--from", downloads)
    assert result.returncode == 0, result.stderr
    for name, ours in KITTI_DOWNLOAD.items():
        assert (tmp_path / "root" / ours).read_bytes() == data_path(ours).read_bytes()
        assert f"copied    {tmp_path / 'root' / ours}  <- {downloads / name}" in result.stdout
    again = fetch("kitti", "--root", tmp_path / "root")   # no --from: checks what is in place
    assert again.returncode == 0 and again.stdout.count("ok        ") == 6
    assert sorted(p.name for p in (tmp_path / "root" / "lidar").iterdir()) == sorted(
        Path(p).name for p in KITTI_DOWNLOAD.values())   # no temporary files left


@with_data("planetoid", "cora")
def test_fetch_links_planetoid_files_and_the_loader_reads_them(tmp_path):
    downloads = tmp_path / "planetoid-master" / "data"
    shutil.copytree(data_path("planetoid", "cora", "raw"), downloads)
    statuses = lay_out("cora", tmp_path / "root", [tmp_path / "planetoid-master"], link=True)
    assert [s.state for s in statuses] == ["linked"] * 8
    x = tmp_path / "root" / "planetoid" / "cora" / "raw" / "ind.cora.x"
    assert x.is_symlink() and x.resolve() == (downloads / "ind.cora.x").resolve()
    assert Planetoid(tmp_path / "root" / "planetoid", "cora", download=False).x.shape == (2708, 1433)


@with_data("lidar")
def test_a_damaged_download_is_refused_and_replaces_nothing(tmp_path):
    downloads = _download_kitti(tmp_path / "kitti")
    good = fetch("kitti", "--root", tmp_path / "root", "--from", downloads)
    assert good.returncode == 0, good.stderr
    scan = downloads / "training" / "velodyne" / "000001.bin"
    data = bytearray(scan.read_bytes())
    data[1000] ^= 1
    scan.write_bytes(bytes(data))
    (tmp_path / "root" / "lidar" / "kitti_training_000001.bin").unlink()
    result = fetch("kitti", "--root", tmp_path / "root", "--from", downloads)
    assert result.returncode == 2
    assert (f"fetch kitti: fetch: {scan} has sha256 {file_sha256(scan)}, but lidar/kitti_training_000001.bin must "
            f"have 59a02fdaaab3b7e903713cb618e8f53efcaf71c144436ddfcdf4f28bdbd73d20") in result.stderr
    assert sorted(p.name for p in (tmp_path / "root" / "lidar").iterdir()) == [
        "kitti_training_000000.bin", "kitti_training_000000_calib.txt", "kitti_training_000000_label_2.txt",
        "kitti_training_000001_calib.txt", "kitti_training_000001_label_2.txt"]   # nothing half-copied
    in_place = tmp_path / "root" / "lidar" / "kitti_training_000000_calib.txt"
    in_place.write_text(in_place.read_text().replace("P0", "Q0"))
    with pytest.raises(ChecksumError, match=f"{in_place} has sha256 .* but lidar/kitti_training_000000_calib.txt must "
                                            f"have 29b89ca9"):
        lay_out("kitti", tmp_path / "root")


def test_missing_files_are_listed_with_their_urls(tmp_path):
    result = fetch("citeseer", "--root", tmp_path)
    assert result.returncode == 1
    assert result.stdout.count("missing   ") == 8
    assert ("download: https://raw.githubusercontent.com/kimiyoung/planetoid/master/data/ind.citeseer.graph"
            in result.stdout)
    assert "fetch citeseer: get the missing files from the folder data/ of github.com/kimiyoung/planetoid" in \
        result.stderr


@pytest.mark.parametrize("args, match", [
    (["kitty"], "fetch: unknown data set(s) kitty; choose from cora, citeseer, pubmed, kitti"),
    ([], "fetch: name at least one data set"),
])
def test_bad_arguments(tmp_path, args, match):
    result = fetch(*args, "--root", tmp_path)
    assert result.returncode != 0 and match in result.stderr
    with pytest.raises(ValueError, match="fetch: unknown data set 'kitty'; choose from cora, citeseer"):
        lay_out("kitty", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"fetch: --from {tmp_path / 'nowhere'} does not exist"):
        lay_out("cora", tmp_path, [tmp_path / "nowhere"])


def test_list_through_the_irregconv_command(capsys):
    assert cli_main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS)
