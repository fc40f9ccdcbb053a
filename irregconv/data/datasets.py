"""The data sets irregconv reads, where they live (:func:`data_root`) and the files it was tested with.

One folder holds every data set (the *data root*): ``$IRREGCONV_DATA`` when set, else ``./datasets``. Inside it:

.. code-block:: text

    planetoid/<name>/raw/ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}    Cora, CiteSeer, PubMed
    lidar/kitti_training_<frame>.bin, _calib.txt, _label_2.txt                 KITTI velodyne + calib + labels
    lidar/kitti_000008_reduced.bin, kitti_000008_reduced_P2.txt               KITTI, front-camera crop
    lidar/nuscenes_<sweep>.pcd.bin                                             nuScenes LIDAR_TOP
    pointclouds/scannet_scene0000_00.bin, pointclouds/pcl_*.pcd                indoor scans

:data:`DATASETS` lists each file with its SHA-256 (of the copies the tests run on) and the paths it has in the
downloads users make, so :func:`lay_out` (``python -m irregconv.data.fetch``) can find a user's files, check
them and put them in place. ``datasets/README.md`` in the repository says where each comes from and its license.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..io import atomic_write

#: environment variable naming the data root
DATA_ROOT_ENV = "IRREGCONV_DATA"
#: data root when the variable is unset: ``datasets`` in the working directory (the repository's folder)
DEFAULT_DATA_ROOT = Path("datasets")
CHUNK_BYTES = 1 << 20


def data_root() -> Path:
    """The folder holding every data set: ``$IRREGCONV_DATA`` if set and not empty, else ``./datasets``."""
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(env) if env else DEFAULT_DATA_ROOT


@dataclass(frozen=True)
class DataFile:
    """One file of a data set.

    Attributes:
        path (str): where it lives under the data root (``/``-separated).
        sha256 (str or None): SHA-256 of the copy irregconv was tested with; None where none is recorded.
        sources (tuple of str): the paths (or path endings) it has in the downloads users make.
        url (str or None): where a single file can be downloaded directly, if anywhere.
    """

    path: str
    sha256: Optional[str]
    sources: Tuple[str, ...] = ()
    url: Optional[str] = None


@dataclass(frozen=True)
class Dataset:
    """A data set: its files and where to get them (see ``datasets/README.md`` for licenses)."""

    name: str
    description: str
    get_it: str
    files: Tuple[DataFile, ...]


PLANETOID_URL = "https://raw.githubusercontent.com/kimiyoung/planetoid/master/data"
PLANETOID_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_PLANETOID_SHA256 = {
    "cora": ("23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
             "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
             "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
             "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
             "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
             "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
             "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
             "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"),
    "citeseer": ("d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
                 "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
                 "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
                 "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
                 "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
                 "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
                 "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
                 "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"),
    "pubmed": (None,) * len(PLANETOID_SUFFIXES),   # not among the tested copies: laid out unchecked
}


def _planetoid(name: str, title: str) -> Dataset:
    files = tuple(DataFile(f"planetoid/{name}/raw/ind.{name}.{suffix}", sha,
                           (f"ind.{name}.{suffix}",), f"{PLANETOID_URL}/ind.{name}.{suffix}")
                  for suffix, sha in zip(PLANETOID_SUFFIXES, _PLANETOID_SHA256[name]))
    return Dataset(name, f"Planetoid {title} citation graph (Yang et al., ICML 2016)",
                   "the folder data/ of github.com/kimiyoung/planetoid (each file's URL is listed)", files)


def _kitti_frame(frame: str) -> Tuple[DataFile, ...]:
    sha = {"000000": ("0e09c85e3f6078ecbdd1e706ee9624519f1bd29417437167a9ed7fbe6f54b4b1",
                      "29b89ca9fa49b2cad778bf73910ff7210c7998badae39796cf29666081992d7f",
                      "6627ff300809ccdb8f0402c1003b7c691a64e3027ceaf0ce7cabfeef9809d0c3"),
           "000001": ("59a02fdaaab3b7e903713cb618e8f53efcaf71c144436ddfcdf4f28bdbd73d20",
                      "5813c05a89e33e67244891c62e153e0a572692d42365b8665e38cc242c7d4918",
                      "36eef20c544fb5cd648ea3144683a6f0e7a6869c94c1347cb7e6997e0253aefd")}[frame]
    return (DataFile(f"lidar/kitti_training_{frame}.bin", sha[0], (f"training/velodyne/{frame}.bin",)),
            DataFile(f"lidar/kitti_training_{frame}_calib.txt", sha[1], (f"training/calib/{frame}.txt",)),
            DataFile(f"lidar/kitti_training_{frame}_label_2.txt", sha[2], (f"training/label_2/{frame}.txt",)))


NUSCENES_SWEEP = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
PCL_CLOUDS = {"table_scene_mug_stereo_textured.pcd": "18bfaf82308e3c1a662486138d8309c957c2b73e61f58f71371e478eb8711464",
              "office1.pcd": "b34da6814cd5979dc7a0648655301f0d3f6fb8275fa1e627c7f7f5b5ca78c201",
              "bunny.pcd": "f5418a140de7a21adc8a46b83bca8ee05b0ebd5a5fe3ca8a0925bcb6535ed511"}

#: name -> Dataset, every data set irregconv's tests, benchmarks and examples read
DATASETS: Dict[str, Dataset] = {d.name: d for d in (
    _planetoid("cora", "Cora"),
    _planetoid("citeseer", "CiteSeer"),
    _planetoid("pubmed", "PubMed"),
    Dataset("kitti", "KITTI 3D object detection, training frames 000000 and 000001: velodyne scan, calib, labels",
            "cvlibs.net/datasets/kitti (3D object: velodyne, calibration and training labels); give --from the "
            "folder that holds training/", _kitti_frame("000000") + _kitti_frame("000001")),
    Dataset("kitti-reduced", "KITTI frame 000008 cropped to the front camera (mmdetection3d's demo file)",
            "demo/data/kitti/ of github.com/open-mmlab/mmdetection3d",
            (DataFile("lidar/kitti_000008_reduced.bin",
                      "3b9de6cc966534900f6a1bdc93b21772e47a334eb2ef18082021956520d902d1", ("kitti/000008.bin",)),
             DataFile("lidar/kitti_000008_reduced_P2.txt",
                      "1a10efe4117db774b63d73480b71728639b778a3ac2f7eafe0faadd94fe8ed88", ("kitti/000008.txt",)))),
    Dataset("nuscenes", "nuScenes LIDAR_TOP sweep (32 beams, x y z intensity ring)",
            "nuscenes.org (samples/LIDAR_TOP of v1.0), or demo/data/nuscenes/ of github.com/open-mmlab/mmdetection3d",
            (DataFile(f"lidar/nuscenes_{NUSCENES_SWEEP}",
                      "5f8f9b1b199ceff7d41cd319021a7a7b02dcd44d41f622a9e65a6a4a6be3cbdb", (NUSCENES_SWEEP,)),)),
    Dataset("scannet", "ScanNet scene0000_00 as mmdetection3d's points file (float32 x y z r g b)",
            "demo/data/scannet/ of github.com/open-mmlab/mmdetection3d (from scan-net.org, terms of use apply)",
            (DataFile("pointclouds/scannet_scene0000_00.bin",
                      "87874538e4fcceed168bf25118f7bb82b8badf3ce20d5fce3a1fd1132f19ab77", ("scene0000_00.bin",)),)),
    Dataset("pcl", "Point Cloud Library test clouds (PCD): a table top, an office, the Stanford bunny",
            "test/ of github.com/PointCloudLibrary/pcl",
            tuple(DataFile(f"pointclouds/pcl_{name}", sha, (f"test/{name}", name)) for name, sha in PCL_CLOUDS.items())),
)}


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumError(ValueError):
    """A file's bytes are not those irregconv was tested with."""


def _check_digest(entry: DataFile, path, got: str) -> None:
    if entry.sha256 is not None and got != entry.sha256:
        raise ChecksumError(f"fetch: {path} has sha256 {got}, but {entry.path} must have {entry.sha256}: it is another "
                            f"file or a damaged download; download it again")


def check_file(entry: DataFile, path) -> None:
    """Raise :class:`ChecksumError` naming ``path`` unless its SHA-256 is ``entry.sha256`` (None: any bytes)."""
    if entry.sha256 is not None:
        _check_digest(entry, path, file_sha256(path))


def _index_sources(sources: Iterable) -> List[Path]:
    """Every file named by ``sources`` (files, or folders searched recursively)."""
    found = []
    for source in sources:
        source = Path(source)
        if source.is_file():
            found.append(source)
        elif source.is_dir():
            for folder, _, names in os.walk(source):
                found.extend(Path(folder) / n for n in names)
        else:
            raise FileNotFoundError(f"fetch: --from {source} does not exist; give downloaded files or folders")
    return found


def _find(entry: DataFile, files: Sequence[Path]) -> Optional[Path]:
    """The file in ``files`` whose path ends like one of ``entry``'s names (its own path first, then its
    sources, longest endings first)."""
    endings = sorted({entry.path, Path(entry.path).name, *entry.sources}, key=lambda e: -len(Path(e).parts))
    for ending in endings:
        parts = Path(ending).parts
        for f in files:
            if f.parts[-len(parts):] == parts:
                return f
    return None


def _copy_checked(entry: DataFile, source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically, hashing the bytes on the way: a copy that fails its check never
    replaces ``target``."""
    digest = hashlib.sha256()
    with atomic_write(target) as out, open(source, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            out.write(chunk)
        _check_digest(entry, source, digest.hexdigest())


def _link_checked(entry: DataFile, source: Path, target: Path) -> None:
    check_file(entry, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.link.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(source.resolve())
    os.replace(temporary, target)


@dataclass(frozen=True)
class FileStatus:
    """What :func:`lay_out` did with one file: ``"ok"`` (in place, checked), ``"unchecked"`` (in place, no
    checksum recorded), ``"copied"`` / ``"linked"`` (from a source, checked) or ``"missing"``."""

    entry: DataFile
    state: str
    source: Optional[Path] = None


def lay_out(name: str, root=None, sources: Sequence = (), link: bool = False) -> List[FileStatus]:
    """Put data set ``name``'s files under ``root`` and check them.

    A file already under ``root`` with the right checksum (or, where none is recorded, any file) stays. Otherwise
    it is looked up in ``sources`` (files,
    or folders searched recursively, by its name in the data root or in the original downloads), checked, and
    copied (or symlinked, ``link=True``) into place; a copy replaces the target atomically.

    Args:
        name (str): a key of :data:`DATASETS`.
        root (path, optional): the data root; default :func:`data_root`.
        sources (sequence of paths): downloaded files or folders; none: only check what is under ``root``.
        link (bool): symlink instead of copying.

    Returns:
        list of FileStatus, one per file of the data set, in :data:`DATASETS` order.

    Raises:
        ValueError: ``name`` is not a known data set.
        ChecksumError: a file (in place with no replacement in ``sources``, or found in ``sources``) has other
            bytes than the tested copy; nothing is replaced by a file that fails its check.
        FileNotFoundError: a source does not exist.
    """
    if name not in DATASETS:
        raise ValueError(f"fetch: unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    root = data_root() if root is None else Path(root)
    files = _index_sources(sources)
    statuses = []
    for entry in DATASETS[name].files:
        target = root / entry.path
        if target.is_file() and (entry.sha256 is None or file_sha256(target) == entry.sha256):
            statuses.append(FileStatus(entry, "ok" if entry.sha256 else "unchecked", target))
            continue
        source = _find(entry, files)
        if source is None:
            if target.is_file():
                check_file(entry, target)   # raises: the file in place is not the tested one
            statuses.append(FileStatus(entry, "missing"))
            continue
        (_link_checked if link else _copy_checked)(entry, source, target)
        statuses.append(FileStatus(entry, "linked" if link else "copied", source))
    return statuses
