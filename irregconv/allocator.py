"""Opt-in tuning of glibc's allocator for the CPU: keep freed memory in the heap for reuse.

A sparse network allocates and frees many short-lived arrays of a few MB (rulebooks, gathered rows,
layer outputs). glibc serves blocks above its mmap threshold with fresh ``mmap`` pages and returns them on
``free``, so every such array page-faults again on first touch: on a 41k-voxel KITTI scan that was 1.2 ms
of a 4.9 ms submanifold rulebook build. PyTorch's CPU performance guide suggests preloading jemalloc or
tcmalloc for the same reason; :func:`reuse_freed_memory` gets most of it from glibc itself with two
``mallopt`` calls. The cost: the process's resident size stays near its peak instead of shrinking after
it (peak memory itself does not grow).

The ``irregconv`` command turns it on for all its subcommands (benchmarks included, so a competitor run in
the same process gets it too); library users call it once at start-up if they want it.
"""
from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_enabled = False


def reuse_freed_memory(mmap_threshold: int = 32 * 2 ** 20, trim_threshold: int = 512 * 2 ** 20) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of
    freed heap for reuse. Returns whether it took effect (False off glibc)."""
    global _enabled
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    _enabled = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
                    and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    return _enabled


def describe() -> str:
    """One line for benchmark headers."""
    return ("allocator: glibc, freed memory kept for reuse (irregconv.allocator.reuse_freed_memory)" if _enabled
            else "allocator: system default")
