"""Which CPU kernels build rulebooks, hash tables and row sums: the native extension, numba, or pure torch; and the
entry to the numba kernels, on torch's thread count.

:func:`cpu_kernels` decides, in one place for :mod:`irregconv.rulebook`, :mod:`irregconv.hashing` and
:mod:`irregconv.engine.backends.rows`: ``"native"`` when the extension is loaded (built at install) and enabled
(``IRREGCONV_NATIVE`` not 0, outside :func:`irregconv.engine.backends.native.disabled`), else ``"numba"`` when numba
is installed (machines without a compiler), else ``"torch"``. The native and numba kernels give the same bits; torch
the same results. With the extension loaded numba is never imported: loading it and specialising its kernels cost a
fresh process's first forward of the SECOND backbone ~0.5 s, and its OpenMP layer loads the system libgomp beside
torch's. :func:`forced_cpu_kernels` makes every call take one path (for tests that compare them).

Launching numba's OpenMP threading layer resets torch's OpenMP thread count to all cores (after a first numba
rulebook build ``torch.set_num_threads(1)`` had silently become 2), so every numba kernel module is fetched through
:func:`kernels`, which launches numba's layer, sets numba's thread count to torch's, and gives torch its own count
back.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Iterator, List, Optional

import torch
from torch import Tensor

from .typing import WITH_NUMBA

#: the CPU kernel paths, fastest first
CPU_PATHS = ("native", "numba", "torch")
_forced: Optional[str] = None
_native = None


def _native_enabled() -> bool:
    global _native
    if _native is None:
        from .engine.backends import native
        _native = native
    return _native.AVAILABLE and _native._enabled


def cpu_kernels(tensor: Tensor) -> str:
    """The kernels that serve a CPU build over ``tensor``: ``"native"``, ``"numba"`` or ``"torch"`` (always torch
    off the CPU)."""
    if tensor.device.type != "cpu":
        return "torch"
    if _forced is not None:
        return _forced
    if _native_enabled():
        return "native"
    return "numba" if WITH_NUMBA else "torch"


def available_cpu_kernels() -> List[str]:
    """The CPU kernel paths usable here, in :data:`CPU_PATHS` order."""
    usable = {"native": _native_enabled(), "numba": WITH_NUMBA, "torch": True}
    return [path for path in CPU_PATHS if usable[path]]


@contextlib.contextmanager
def forced_cpu_kernels(path: str) -> Iterator[None]:
    """Within the block, every CPU rulebook, hash-table and row-sum call takes ``path`` (one of :data:`CPU_PATHS`).

    Raises:
        ValueError: if ``path`` is unknown or not available here (no extension, no numba).
    """
    global _forced
    if path not in CPU_PATHS:
        raise ValueError(f"forced_cpu_kernels: path must be one of {CPU_PATHS}, got {path!r}")
    if path not in available_cpu_kernels():
        raise ValueError(f"forced_cpu_kernels: the {path} kernels are not available here (the native extension is "
                         f"built at install; numba is an optional package)")
    previous, _forced = _forced, path
    try:
        yield
    finally:
        _forced = previous


def kernels(module: str):
    """Import the numba kernel module ``module`` after matching numba's thread count to torch's."""
    import numba
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return importlib.import_module(module)


def native_kernels(name: str):
    """The wrappers of the native kernels ``irregconv.engine.backends.native.<name>`` (``rulebook``, ``hashing``,
    ``rows``), imported on first use (the engine imports the rulebook package, so not at import time)."""
    return importlib.import_module(f"irregconv.engine.backends.native.{name}")
