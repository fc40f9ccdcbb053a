"""Skip decorators for optional packages and real data, the list of devices to test on, and a context
manager that pins the torch and numba thread counts.

Skip reasons start with ``"needs package"`` or ``"needs data"``; under ``CI=true`` the suite's
``conftest.py`` turns such skips into failures, so CI cannot go green without the extras and data.
"""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _why_missing(name: str) -> str | None:
    """None if ``name`` imports; else why not: not installed, or installed but failing to import (naming the
    missing system library when that is the cause, e.g. open3d without libusb)."""
    if importlib.util.find_spec(name) is None:
        return name
    try:
        __import__(name)
    except Exception as exc:  # a package that is present but fails to import
        from ..data.points import missing_system_library
        library = missing_system_library(exc)
        return f"{name} (installed, but its import fails: {library or f'{type(exc).__name__}: {exc}'})"
    return None


def with_package(*names: str):
    """Skip the test unless every named package imports; the reason names what is missing (a package, or the
    system library an installed package needs)."""
    missing = [reason for reason in map(_why_missing, names) if reason is not None]
    return pytest.mark.skipif(bool(missing), reason=f"needs package {', '.join(missing)}")


def data_path(*parts: str) -> Path | None:
    """``<data root>/<parts>`` if it exists, else None; the data root is :func:`irregconv.data.data_root`
    (``$IRREGCONV_DATA``, else ``./datasets``)."""
    from ..data.datasets import data_root
    path = data_root().joinpath(*parts)
    return path if path.exists() else None


def with_data(*parts: str):
    """Mark a test as reading ``$IRREGCONV_DATA/<parts>``; skip if it is missing."""
    skip = pytest.mark.skipif(data_path(*parts) is None, reason=f"needs data $IRREGCONV_DATA/{'/'.join(parts)}")

    def decorate(test):
        return pytest.mark.data(skip(test))
    return decorate


@contextlib.contextmanager
def threads(count: int):
    """torch and numba thread counts set to ``count`` within the block, restored afterwards."""
    import numba

    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(count)
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)
