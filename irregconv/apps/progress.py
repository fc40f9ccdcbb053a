"""A dependency-free progress bar on stderr (one line, redrawn)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "train") as bar: bar.update(loss=..., rate=...)``."""

    def __init__(self, total: int, label: str, enabled: bool = True, width: int = 24):
        self.total, self.label, self.enabled, self.width = total, label, enabled, width
        self.done = 0
        self.start = time.perf_counter()

    def update(self, step: int = 1, **values) -> None:
        self.done += step
        if not self.enabled:
            return
        filled = int(self.width * self.done / max(self.total, 1))
        fields = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
                         f"  {fields}  {elapsed:.0f}s ")
        sys.stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
