"""A dependency-free progress bar on stderr."""
from __future__ import annotations

import sys


class ProgressBar:
    """A one-line text progress bar on stderr (redrawn in place on a terminal, sparse lines otherwise)."""

    def __init__(self, total: int, label: str, stream=None, width: int = 30):
        self.total, self.label, self.width = total, label, width
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.done = 0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        filled = self.width * done // max(self.total, 1)
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {note}"
        if self.tty:
            self.stream.write("\r" + line)
        elif done == self.total or done % max(self.total // 10, 1) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
