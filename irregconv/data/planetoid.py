"""Planetoid citation graphs (Cora, CiteSeer) read from the original ``ind.<name>.*`` files.

The files are those of the canonical release (kimiyoung/planetoid, Yang et al., "Revisiting
Semi-Supervised Learning with Graph Embeddings", ICML 2016, arXiv:1603.08861). The reading follows
the standard recipe (Kipf & Welling, PyG): training nodes are the ``y`` rows, validation the next 500,
test the ``test.index`` ids, test rows re-ordered into their ids, self-loops dropped and duplicate edges
merged. For CiteSeer, 15 test ids have no row in ``tx`` (isolated nodes without features); they get zero
features and label 0, as in PyG, so that node ids stay contiguous.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import pickle
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write
from .datasets import DATASETS, PLANETOID_SUFFIXES, PLANETOID_URL

PLANETOID_NAMES = ("cora", "citeseer")
DOWNLOAD_TIMEOUT_S = 5.0
NUM_VAL = 500


@dataclass(frozen=True)
class NodeClassificationGraph:
    """A graph with node features, labels and a fixed train/validation/test split.

    Attributes:
        name (str): data-set name.
        x (Tensor): ``[N, F]`` float32 node features (dense; ``x.to_sparse_csr()`` for a sparse layer).
        edge_index (Tensor): ``[2, E]`` int64, row 0 source, row 1 target, no duplicates.
        y (Tensor): ``[N]`` int64 labels.
        train_mask, val_mask, test_mask (Tensor): ``[N]`` bool.
        num_classes (int): number of classes.
    """
    name: str
    x: Tensor
    edge_index: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    def to(self, device) -> "NodeClassificationGraph":
        """A copy with every tensor moved to ``device``."""
        moved = copy.copy(self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                object.__setattr__(moved, f.name, value.to(device))
        return moved

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, nodes={self.num_nodes}, "
                f"edges={self.edge_index.size(1)}, features={self.num_features}, classes={self.num_classes}, "
                f"train/val/test={int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())})")


class Planetoid(NodeClassificationGraph):
    """Cora or CiteSeer from the raw Planetoid files in ``root/<name>/raw/``.

    Missing files are fetched from the canonical GitHub release when the network allows (a short
    timeout); otherwise a ``FileNotFoundError`` says which files to put where.

    Args:
        root (str or Path): folder holding ``<name>/raw/ind.<name>.<suffix>``.
        name (str): ``"cora"`` or ``"citeseer"`` (case-insensitive).
        download (bool): try to download missing files (default: ``True``).

    Shapes:
        Cora: ``x [2708, 1433]``, ``edge_index [2, 10556]``, masks 140 / 500 / 1000.
        CiteSeer: ``x [3327, 3703]``, ``edge_index [2, 9104]``, masks 120 / 500 / 1000.

    Example:
        >>> data = Planetoid("/path/to/planetoid", "cora")  # doctest: +SKIP
        >>> data.x.shape, int(data.train_mask.sum())  # doctest: +SKIP
        (torch.Size([2708, 1433]), 140)
    """

    def __init__(self, root: Union[str, Path], name: str, download: bool = True):
        if not isinstance(name, str) or name.lower() not in PLANETOID_NAMES:
            raise ValueError(f"Planetoid: name must be one of {PLANETOID_NAMES}, got {name!r}")
        name = name.lower()
        raw_dir = Path(root) / name / "raw"
        _ensure_raw_files(raw_dir, name, download)
        super().__init__(name=name, **_read_planetoid(raw_dir, name))


def raw_file_names(name: str):
    """The eight file names of one Planetoid data set."""
    return [f"ind.{name}.{suffix}" for suffix in PLANETOID_SUFFIXES]


def _ensure_raw_files(raw_dir: Path, name: str, download: bool) -> None:
    missing = [f for f in raw_file_names(name) if not (raw_dir / f).is_file()]
    if not missing:
        return
    reason = "download disabled"
    if download:
        try:
            _download(raw_dir, name, missing)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = f"download from {PLANETOID_URL} failed: {err}"
    raise FileNotFoundError(
        f"Planetoid: missing {len(missing)} file(s) of {name!r} in {raw_dir} ({reason}). Put the original "
        f"files {', '.join(missing)} (from github.com/kimiyoung/planetoid, folder data/) into {raw_dir}, "
        f"or pass root= the folder that holds {name}/raw/.")


def _download(raw_dir: Path, name: str, files) -> None:
    # fetch and check everything in memory first so a failure half-way leaves no partial set behind
    expected = {Path(entry.path).name: entry.sha256 for entry in DATASETS[name].files}
    blobs = {}
    for f in files:
        with urllib.request.urlopen(f"{PLANETOID_URL}/{f}", timeout=DOWNLOAD_TIMEOUT_S) as response:
            blobs[f] = response.read()
        got = hashlib.sha256(blobs[f]).hexdigest()
        if expected[f] is not None and got != expected[f]:
            raise ValueError(f"Planetoid: the download of {PLANETOID_URL}/{f} has sha256 {got}, not the tested "
                             f"file's {expected[f]}; nothing was written to {raw_dir}")
    for f, blob in blobs.items():
        with atomic_write(raw_dir / f) as out:
            out.write(blob)


class UntrustedPickleError(pickle.UnpicklingError):
    """A data file names a class outside the Planetoid files' few (a tampered or foreign pickle)."""


class _PlanetoidUnpickler(pickle.Unpickler):
    """Unpickles only the few classes the Planetoid files contain, so a tampered download cannot run code."""

    _ALLOWED = {
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy", "ndarray"): lambda: np.ndarray,
        # the files name numpy 1.x's module; the function itself is found version-independently
        ("numpy.core.multiarray", "_reconstruct"): lambda: np.empty(0).__reduce__()[0],
        ("scipy.sparse.csr", "csr_matrix"): lambda: __import__("scipy.sparse").sparse.csr_matrix,
        ("collections", "defaultdict"): lambda: __import__("collections").defaultdict,
        ("__builtin__", "list"): lambda: list,
    }

    def find_class(self, module, name):
        resolve = self._ALLOWED.get((module, name))
        if resolve is None:
            raise UntrustedPickleError(f"Planetoid: refusing to load {module}.{name} from a data file")
        return resolve()


def _read_file(raw_dir: Path, name: str, suffix: str):
    path = raw_dir / f"ind.{name}.{suffix}"
    try:
        if suffix == "test.index":
            return torch.tensor([int(line) for line in path.read_text().split()], dtype=torch.long)
        obj = _PlanetoidUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except UntrustedPickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"Planetoid: {path} is truncated or corrupt ({type(err).__name__}: {err}); replace it "
                         f"with the original file from github.com/kimiyoung/planetoid (folder data/)") from None
    if suffix == "graph":
        return obj
    array = obj.toarray() if hasattr(obj, "toarray") else np.asarray(obj)
    return torch.from_numpy(array.astype(np.float32))


def _edge_index_from_dict(graph: Dict[int, list], num_nodes: int) -> Tensor:
    src = torch.tensor([s for s, targets in graph.items() for _ in targets], dtype=torch.long)
    dst = torch.tensor([t for targets in graph.values() for t in targets], dtype=torch.long)
    keep = src != dst
    # sorted by (target, source) as PyG's reader does, i.e. the CSR order of A[target, source]
    key = torch.unique(dst[keep] * num_nodes + src[keep])
    return torch.stack([key % num_nodes, key // num_nodes])


def _index_to_mask(index: Tensor, size: int) -> Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[index] = True
    return mask


def _read_planetoid(raw_dir: Path, name: str) -> dict:
    _, tx, allx, y, ty, ally, graph, test_index = (_read_file(raw_dir, name, s) for s in PLANETOID_SUFFIXES)
    # a file cut at a line break still parses: check that the parts describe one data set
    if not (test_index.numel() == tx.size(0) == ty.size(0) and allx.size(0) == ally.size(0)
            and test_index.numel() and int(test_index.min()) >= allx.size(0)
            and torch.unique(test_index).numel() == test_index.numel()):
        ids = f"{test_index.numel()} ids from {int(test_index.min())}" if test_index.numel() else "no ids"
        raise ValueError(f"Planetoid: the files in {raw_dir} do not fit together: ind.{name}.test.index has {ids}, "
                         f"tx/ty have {tx.size(0)}/{ty.size(0)} rows and allx/ally {allx.size(0)}/{ally.size(0)}; "
                         f"the test ids must be unique, one per tx row, and >= the number of allx rows. A file is "
                         f"truncated or from another release: replace it with the original from "
                         f"github.com/kimiyoung/planetoid (folder data/)")
    sorted_test = test_index.sort().values
    if name == "citeseer":
        # isolated test nodes have ids in test.index's range but no rows in tx/ty: give them zero rows
        span = int(test_index.max() - test_index.min()) + 1
        rows = sorted_test - test_index.min()
        tx_full, ty_full = tx.new_zeros(span, tx.size(1)), ty.new_zeros(span, ty.size(1))
        tx_full[rows], ty_full[rows] = tx, ty
        tx, ty = tx_full, ty_full
    features = torch.cat([allx, tx])
    features[test_index] = features[sorted_test]
    labels = torch.cat([ally, ty]).argmax(dim=1)
    labels[test_index] = labels[sorted_test]
    n = labels.numel()
    return dict(
        x=features, edge_index=_edge_index_from_dict(graph, n), y=labels,
        train_mask=_index_to_mask(torch.arange(y.size(0)), n),
        val_mask=_index_to_mask(torch.arange(y.size(0), y.size(0) + NUM_VAL), n),
        test_mask=_index_to_mask(test_index, n), num_classes=int(ally.size(1)))
