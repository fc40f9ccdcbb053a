import pickle
import shutil
import urllib.error
import urllib.request

import pytest
import torch

from irregconv.data.planetoid import Planetoid, raw_file_names
from irregconv.testing import data_path, with_data, with_package

SIZES = {"cora": (2708, 1433, 10556, 7, 140), "citeseer": (3327, 3703, 9104, 6, 120)}


@with_data("planetoid", "cora")
@with_data("planetoid", "citeseer")
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_planetoid_shapes_and_splits(name):
    data = Planetoid(data_path("planetoid"), name)
    nodes, features, edges, classes, train = SIZES[name]
    assert data.x.shape == (nodes, features) and data.x.dtype == torch.float32
    assert data.edge_index.shape == (2, edges) and data.edge_index.dtype == torch.int64
    assert data.y.shape == (nodes,) and int(data.y.max()) == classes - 1 and data.num_classes == classes
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [train, 500, 1000]
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    # 20 training nodes per class, no self-loops, no duplicates, every edge in both directions
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * classes
    src, dst = data.edge_index
    assert not (src == dst).any()
    key = src * nodes + dst
    assert torch.unique(key).numel() == edges
    assert torch.equal(torch.sort(key).values, torch.sort(dst * nodes + src).values)


@with_data("planetoid", "citeseer")
def test_citeseer_isolated_test_nodes_get_zero_rows():
    data = Planetoid(data_path("planetoid"), "citeseer")
    empty = data.x.sum(dim=1) == 0
    test_ids = data.test_mask.nonzero().squeeze(1)
    span = torch.arange(int(test_ids.min()), int(test_ids.max()) + 1)
    missing = span[~data.test_mask[span]]
    assert missing.numel() == 15
    assert empty[missing].all() and (data.y[missing] == 0).all()


@with_package("torch_geometric")
@with_data("planetoid", "cora")
@with_data("planetoid", "citeseer")
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_planetoid_matches_pyg_reader(name, tmp_path):
    from torch_geometric.datasets import Planetoid as PygPlanetoid
    # PyG writes processed/ next to raw/: give it a copy, never the shared folder
    shutil.copytree(data_path("planetoid", name, "raw"), tmp_path / name / "raw")
    ref = PygPlanetoid(str(tmp_path), name)[0]
    data = Planetoid(data_path("planetoid"), name)
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(data, key), getattr(ref, key)), key


def test_missing_files_error_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="ind.cora.graph") as info:
        Planetoid(tmp_path, "cora", download=False)
    assert str(tmp_path / "cora" / "raw") in str(info.value)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="download from .* failed"):
        Planetoid(tmp_path, "citeseer")
    assert not (tmp_path / "citeseer" / "raw").exists()


def serve_local_copies(monkeypatch, damage=lambda url, blob: blob):
    """Make ``urllib.request.urlopen`` answer each Planetoid URL with the real file from IRREGCONV_DATA (the
    network is not reachable here), its bytes passed through ``damage(url, blob)``; returns the URLs asked for."""
    fetched = []

    class Response:
        def __init__(self, url):
            fetched.append(url)
            self.blob = damage(url, (data_path("planetoid", "cora", "raw") / url.rsplit("/", 1)[1]).read_bytes())

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.blob

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(url))
    return fetched


@with_data("planetoid", "cora")
def test_download_fetches_the_canonical_files(tmp_path, monkeypatch):
    fetched = serve_local_copies(monkeypatch)
    data = Planetoid(tmp_path, "Cora")
    assert sorted(u.rsplit("/", 1)[1] for u in fetched) == sorted(raw_file_names("cora"))
    assert all(u.startswith("https://raw.githubusercontent.com/kimiyoung/planetoid/") for u in fetched)
    assert torch.equal(data.edge_index, Planetoid(data_path("planetoid"), "cora").edge_index)


@with_data("planetoid", "cora")
def test_planetoid_download_with_other_bytes_is_refused(tmp_path, monkeypatch):
    serve_local_copies(monkeypatch, lambda url, blob: blob[:-1] if url.endswith("ind.cora.ty") else blob)
    with pytest.raises(ValueError, match=r"Planetoid: the download of https://.*/ind.cora.ty has sha256 .* not the "
                                         r"tested file's 41f5ac76.*nothing was written"):
        Planetoid(tmp_path, "cora")
    assert not (tmp_path / "cora").exists()


class _Exploit:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-irregconv",))


@with_data("planetoid", "cora")
def test_untrusted_pickle_is_refused(tmp_path):
    raw = tmp_path / "cora" / "raw"
    shutil.copytree(data_path("planetoid", "cora", "raw"), raw)
    (raw / "ind.cora.graph").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load shutil.rmtree"):
        Planetoid(tmp_path, "cora")


@pytest.mark.parametrize("name", ["pubmed", "Cora2", 3])
def test_unknown_name(tmp_path, name):
    with pytest.raises(ValueError, match="Planetoid: name must be one of"):
        Planetoid(tmp_path, name)


@with_data("planetoid", "cora")
def test_to_moves_every_tensor():
    data = Planetoid(data_path("planetoid"), "cora")
    moved = data.to("cpu")
    assert moved is not data and moved.x is data.x and "train/val/test=140/500/1000" in repr(moved)
