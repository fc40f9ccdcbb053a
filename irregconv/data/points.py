"""Point-cloud readers: KITTI ``.bin``, nuScenes ``.pcd.bin``, ``.pcd`` / ``.ply`` (open3d), ``.npy`` / ``.npz``.

Every reader returns ``float32 [N, F]`` with x, y, z in the first three columns and checks the file
before trusting it: raw binaries must hold a whole number of records, and PCD / PLY headers are read
here and compared with the bytes that follow, because open3d 0.20 returns points from uninitialised
memory for a truncated ASCII PCD or a truncated PLY (with only a warning on stderr).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

#: float32 values per point of the raw binary formats
RECORD_WIDTH = {".pcd.bin": 5, ".bin": 4}
SUPPORTED = (".bin (KITTI: x, y, z, intensity)", ".pcd.bin (nuScenes: x, y, z, intensity, ring)",
             ".pcd / .ply (via open3d)", ".npy / .npz")
_PLY_TYPE_SIZE = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2,
                  "uint16": 2, "int": 4, "uint": 4, "float": 4, "int32": 4, "uint32": 4, "float32": 4,
                  "double": 8, "float64": 8}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".pcd.bin" if name.endswith(".pcd.bin") else path.suffix.lower()


def read_points(path: Union[str, Path], num_features: Optional[int] = None) -> np.ndarray:
    """Read a point cloud as ``float32 [N, F]`` (x, y, z first).

    * ``.bin``: KITTI velodyne, ``F = 4`` (x, y, z, intensity);
    * ``.pcd.bin``: nuScenes LIDAR_TOP sweep, ``F = 5`` (x, y, z, intensity, ring);
    * ``.pcd`` / ``.ply``: through open3d, ``F = 3``, or 6 with colours (r, g, b in [0, 1]); nothing is
      dropped here: the non-finite points of organised clouds are kept (:func:`voxelize` drops and
      counts them);
    * ``.npy``: a ``[N, F]`` array; ``.npz``: the array named ``points``, or the only array.

    Args:
        path: the file.
        num_features (int, optional): float32 values per point of a raw ``.bin`` / ``.pcd.bin`` whose
            layout differs from the default (e.g. 6 for ScanNet's x, y, z, r, g, b ``.bin``). A raw
            binary does not record its width, so a wrong width that happens to divide the byte count
            cannot be detected; pass it whenever the file is not a KITTI / nuScenes scan.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, a byte count that is not a whole number of records, a PCD / PLY
            header that promises more points than the file holds, a file open3d cannot parse, or an
            array that is not ``[N, F >= 3]``.
        ImportError: a ``.pcd`` / ``.ply`` file and open3d is not installed.

    Example:
        >>> points = read_points("kitti/training/velodyne/000000.bin")  # doctest: +SKIP
        >>> points.shape, points.dtype  # doctest: +SKIP
        ((115384, 4), dtype('float32'))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_points: path must be a str or os.PathLike (e.g. pathlib.Path), got "
                        f"{type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_points: no such file: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = _suffix(path)
    if num_features is not None and suffix not in RECORD_WIDTH:
        raise ValueError(f"read_points: num_features applies to raw .bin / .pcd.bin files only, got "
                         f"num_features={num_features!r} for {path}")
    if suffix in RECORD_WIDTH:
        return _read_raw(path, suffix, num_features)
    if suffix in (".pcd", ".ply"):
        return _read_open3d(path, suffix)
    if suffix in (".npy", ".npz"):
        return _read_numpy(path)
    raise ValueError(f"read_points: unknown point file type {path.suffix!r} for {path}; supported: "
                     + ", ".join(SUPPORTED))


def _read_raw(path: Path, suffix: str, num_features: Optional[int]) -> np.ndarray:
    width = RECORD_WIDTH[suffix] if num_features is None else num_features
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 3:
        raise ValueError(f"read_points: num_features must be an int >= 3 (x, y, z first), got {num_features!r}")
    size = path.stat().st_size
    if size % (4 * width):
        raise ValueError(f"read_points: {path} has {size} bytes, not a multiple of {4 * width} "
                         f"({width} float32 per point for {suffix}); the file is truncated or not a "
                         f"{suffix} scan of that layout (pass num_features=F for F floats per point)")
    return np.fromfile(path, dtype=np.float32).reshape(-1, width)


def _header_lines(data: bytes, end_marker: bytes, path: Path, kind: str):
    """Split ``data`` at the line starting with ``end_marker``: (header lines, offset of the body)."""
    lines: List[str] = []
    offset = 0
    while offset < len(data):
        newline = data.find(b"\n", offset)
        if newline < 0:
            break
        line = data[offset:newline].strip()
        offset = newline + 1
        try:
            lines.append(line.decode("ascii"))
        except UnicodeDecodeError:
            break
        if line.startswith(end_marker):
            return lines, offset
    raise ValueError(f"read_points: {path} has no complete {kind} header (no line starting with "
                     f"{end_marker.decode()!r}); the file is truncated or not a {kind} file")


def _check_ascii(path: Path, body: bytes, count: int, values_per_point: int, kind: str) -> None:
    """An ASCII body must hold ``count`` records of ``values_per_point`` numbers (a cut line has fewer) and
    nothing but numbers there (open3d stops parsing a damaged token early and keeps a wrong value)."""
    tokens = body.split()
    if len(tokens) < count * values_per_point:
        raise ValueError(f"read_points: {path} is truncated: its {kind} header promises {count} points of "
                         f"{values_per_point} values ({count * values_per_point} numbers), the ASCII data "
                         f"has {len(tokens)}")
    try:
        np.array(tokens[:count * values_per_point], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"read_points: {path} is corrupt: its {kind} ASCII data holds a value that is not a "
                         f"number ({exc})") from None


def _check_pcd(path: Path, data: bytes) -> int:
    """Number of points the PCD header promises, after checking the data section holds them."""
    lines, offset = _header_lines(data, b"DATA", path, "PCD")
    fields: Dict[str, List[str]] = {}
    for line in lines:
        if line and not line.startswith("#"):
            key, *values = line.split()
            fields[key.upper()] = values
    try:
        sizes = [int(v) for v in fields["SIZE"]]
        counts = [int(v) for v in fields.get("COUNT", ["1"] * len(sizes))]
        num_points = int(fields["POINTS"][0]) if "POINTS" in fields else \
            int(fields["WIDTH"][0]) * int(fields["HEIGHT"][0])
        encoding = fields["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"read_points: {path} has a malformed PCD header ({exc!r}); it needs SIZE, POINTS "
                         f"(or WIDTH and HEIGHT) and DATA lines") from None
    body = data[offset:]
    record = sum(s * c for s, c in zip(sizes, counts))
    if encoding == "ascii":
        _check_ascii(path, body, num_points, sum(counts), "PCD")
    elif encoding == "binary":
        if len(body) < num_points * record:
            raise ValueError(f"read_points: {path} is truncated: {num_points} points of {record} bytes need "
                             f"{num_points * record} bytes of binary data, the file has {len(body)}")
    elif encoding == "binary_compressed":
        if len(body) < 8:
            raise ValueError(f"read_points: {path} is truncated: its binary_compressed data has no size fields")
        compressed, uncompressed = np.frombuffer(body[:8], dtype="<u4").tolist()
        if uncompressed != num_points * record or len(body) < 8 + compressed:
            raise ValueError(f"read_points: {path} is truncated or corrupt: binary_compressed data of "
                             f"{compressed} bytes (unpacking to {uncompressed}, {num_points * record} expected) "
                             f"but {len(body) - 8} bytes follow the header")
    else:
        raise ValueError(f"read_points: {path} has PCD encoding {encoding!r}; expected ascii, binary or "
                         f"binary_compressed")
    return num_points


def _check_ply(path: Path, data: bytes) -> int:
    """Number of vertices the PLY header promises, after checking the body holds them."""
    if not data.startswith(b"ply"):
        raise ValueError(f"read_points: {path} does not start with 'ply'; it is not a PLY file")
    lines, offset = _header_lines(data, b"end_header", path, "PLY")
    encoding, num_vertices, vertex_bytes, num_properties, element = None, None, 0, 0, None
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "format" and len(words) > 1:
            encoding = words[1]
        elif words[0] == "element" and len(words) == 3:
            element = words[1]
            if element == "vertex":
                num_vertices = int(words[2])
        elif words[0] == "property" and element == "vertex":
            num_properties += 1
            # a list property has no fixed size: no byte count can be checked
            vertex_bytes = None if words[1] == "list" or vertex_bytes is None else \
                vertex_bytes + _PLY_TYPE_SIZE.get(words[1], 0)
    if num_vertices is None or encoding is None:
        raise ValueError(f"read_points: {path} has a PLY header without 'format' or 'element vertex N'; "
                         f"it holds no point cloud")
    body = data[offset:]
    if encoding == "ascii":
        _check_ascii(path, body, num_vertices, num_properties, "PLY")
    elif vertex_bytes is not None and len(body) < num_vertices * vertex_bytes:
        raise ValueError(f"read_points: {path} is truncated: {num_vertices} vertices of {vertex_bytes} bytes "
                         f"need {num_vertices * vertex_bytes} bytes, the file has {len(body)} after its header")
    return num_vertices


#: system libraries that optional packages load, and the Debian / Ubuntu package that provides each
SYSTEM_LIBRARIES = {"libusb-1.0.so.0": "libusb-1.0-0"}   # open3d-cpu 0.20


def missing_system_library(error: BaseException) -> Optional[str]:
    """For an import that failed because a shared library is missing: a sentence naming the library and how to
    install it (``make install`` does it where it runs as root with apt-get); else None."""
    found = re.search(r"(lib[\w.+-]+?\.so(?:\.\d+)*)", str(error))
    if found is None:
        return None
    library = found.group(1)
    package = SYSTEM_LIBRARIES.get(library)
    how = (f"install Debian's {package}: `sudo apt-get install {package}` (make install does it when run as root)"
           if package else "install the system package that provides it")
    return f"the system library {library} is missing; {how}"


def _read_open3d(path: Path, suffix: str) -> np.ndarray:
    try:
        import open3d
    except ImportError as exc:
        library = missing_system_library(exc)
        reason = f"open3d is installed but does not import: {library}" if library else \
            f"it needs open3d (pip install 'irregconv[open3d]'): {exc}"
        raise ImportError(f"read_points: cannot read {suffix} files here: {reason}") from exc
    data = path.read_bytes()
    expected = _check_pcd(path, data) if suffix == ".pcd" else _check_ply(path, data)
    cloud = open3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    xyz = np.asarray(cloud.points, dtype=np.float32)
    if xyz.shape[0] != expected:
        raise ValueError(f"read_points: open3d read {xyz.shape[0]} points from {path}, whose header promises "
                         f"{expected}; the file is corrupt or uses a {suffix} variant open3d cannot parse")
    if cloud.has_colors():
        return np.concatenate([xyz, np.asarray(cloud.colors, dtype=np.float32)], axis=1)
    return xyz


def _read_numpy(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"read_points: {path} is not a readable numpy file ({exc}); save the points with "
                         f"np.save / np.savez as a float [N, F] array") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = loaded.files
            if "points" in names:
                array = loaded["points"]
            elif len(names) == 1:
                array = loaded[names[0]]
            else:
                raise ValueError(f"read_points: {path} holds arrays {names}; name the point array 'points'")
    else:
        array = loaded
    if array.ndim != 2 or array.shape[1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"read_points: {path} holds an array of shape {array.shape} and dtype {array.dtype}; "
                         f"expected a numeric [N, F] array with F >= 3 (x, y, z first)")
    return np.ascontiguousarray(array, dtype=np.float32)
