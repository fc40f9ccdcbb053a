"""Timing helpers shared by the benchmarks: medians over repeats after warm-up, sgemm reference rate."""
from __future__ import annotations

import statistics
import time
from typing import Callable, List

import torch


def time_runs(fn: Callable[[], object], repeat: int = 7, warmup: int = 2) -> List[float]:
    """Wall times in seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_time(fn: Callable[[], object], repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time in seconds (see :func:`time_runs`)."""
    return statistics.median(time_runs(fn, repeat, warmup))


def sgemm_gflops(size: int = 2048, repeat: int = 5) -> float:
    """This machine's ``torch.mm`` rate on square float32 matrices, in GFLOP/s, at the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size ** 3 / median_time(lambda: torch.mm(a, b), repeat=repeat, warmup=1) / 1e9


def format_table(header: List[str], rows: List[List[object]]) -> str:
    """A plain fixed-width text table."""
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
