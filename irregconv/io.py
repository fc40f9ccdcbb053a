"""Files written whole or not at all: checkpoints, configs and data files never left half-written.

:func:`atomic_write` writes into a temporary file in the target's folder, flushes and fsyncs it, then
renames it over the target with ``os.replace`` (atomic on POSIX and Windows within one file system). A
crash, a kill or a full disk mid-write leaves the previous file untouched; an exception also removes the
temporary file (after ``SIGKILL`` or a power cut a ``.<name>.<random>.tmp`` file may remain beside it).
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

import torch

WRITE_MODES = ("wb", "w")


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder and needs nothing here)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename has still happened
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Args:
        path (str or os.PathLike): the file to write; its folder is created if missing.
        mode (str): ``"wb"`` (binary, default) or ``"w"`` (text).
        encoding (str): text encoding for ``mode="w"``.

    Yields:
        the open temporary file. It gets the permissions a new file gets (``0o666`` less the umask).

    Raises:
        ValueError: ``mode`` is not ``"wb"`` or ``"w"``.
        OSError: writing failed (full disk, quota, permissions); ``path`` is unchanged and the temporary
            file removed. Any exception raised inside the block does the same and propagates.

    Example:
        >>> with atomic_write("model.pt") as f:  # doctest: +SKIP
        ...     torch.save(model.state_dict(), f)
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"atomic_write: mode must be one of {WRITE_MODES}, got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


class _WriteErrorRecorder:
    """A binary file's ``write`` that remembers the OSError it raised: ``torch.save`` turns a failed write (full
    disk, quota) into a bare ``RuntimeError`` ("unexpected pos ..."), and :func:`save_atomic` raises the OSError."""

    def __init__(self, file):
        self.file = file
        self.error = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_atomic(obj, path) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`: ``path`` holds the old or the new object, never a
    mix. Returns ``path`` as a Path.

    Raises:
        OSError: a write failed (e.g. ``ENOSPC``, no space left on the device); ``path`` is unchanged.
    """
    with atomic_write(path) as file:
        writer = _WriteErrorRecorder(file)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
    return Path(path)


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)`` through :func:`atomic_write`. Returns ``path`` as a Path."""
    if not isinstance(text, str):
        raise TypeError(f"write_text_atomic: text must be a str, got {type(text).__name__}")
    with atomic_write(path, "w", encoding=encoding) as file:
        file.write(text)
    return Path(path)
