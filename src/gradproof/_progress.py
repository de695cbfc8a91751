"""A progress bar on stderr for long checks: rate and time left, nothing in CI."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

# A check shows its bar only once it has run this long (when progress=None).
SHOW_AFTER_SECONDS = 2.0


def _on_terminal(stream: TextIO) -> bool:
    if os.environ.get("CI") or os.environ.get("NO_PROGRESS"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Counts coordinates done out of ``total``; draws at most ten times a second."""

    def __init__(self, total: int, label: str, enabled: bool | None, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(int(total), 1)
        self.label = label
        self.forced = enabled is True
        self.enabled = enabled is True or (enabled is None and _on_terminal(self.stream))
        self.done = 0
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = False

    def tick(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        if not self.forced and elapsed < SHOW_AFTER_SECONDS:
            return
        if now - self.last_draw < 0.1 and self.done < self.total:
            return
        self.last_draw = now
        self.drawn = True
        self.stream.write("\r" + self.line(elapsed))
        self.stream.flush()

    def line(self, elapsed: float) -> str:
        frac = min(self.done / self.total, 1.0)
        width = 24
        filled = int(frac * width)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = format_seconds(left) if left != float("inf") else "?"
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{rate:,.0f}/s, {eta} left "
        )

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + self.line(time.perf_counter() - self.start) + "\n")
            self.stream.flush()


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s"
    return f"{s // 3600:.0f}h{(s % 3600) // 60:02.0f}m"
