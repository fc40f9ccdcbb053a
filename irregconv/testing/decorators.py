"""Skip decorators for optional packages and real data, the list of devices to test on, and a context
manager that pins the torch and numba thread counts.

Skip reasons start with ``"needs package"`` or ``"needs data"``; under ``CI=true`` the suite's
``conftest.py`` turns such skips into failures, so CI cannot go green without the extras and data.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        __import__(name)
    except Exception:  # a package that is present but fails to import (e.g. open3d without libusb)
        return False
    return True


def with_package(*names: str):
    """Skip the test unless every named package imports."""
    missing = [n for n in names if not _importable(n)]
    return pytest.mark.skipif(bool(missing), reason=f"needs package {', '.join(missing)}")


def data_path(*parts: str) -> Path | None:
    """``$IRREGCONV_DATA/<parts>`` if it exists, else None."""
    root = os.environ.get("IRREGCONV_DATA")
    if not root:
        return None
    path = Path(root).joinpath(*parts)
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
