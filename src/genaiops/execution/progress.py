"""Progress for long work, on stderr: a redrawn bar on a terminal, sparse lines in CI logs."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Tracks several tasks (e.g. batch runs) and an overall total of `unit`s (lines, runs)."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True, unit: str = "lines"):
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(total, 1)
        self.label = label
        self.done: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_quarter = -1
        self._started = time.monotonic()

    def add_task(self, name: str, size: int) -> None:
        with self._lock:
            self.sizes[name], self.done[name] = size, 0

    def update(self, name: str, done: int) -> None:
        with self._lock:
            self.done[name] = min(done, self.sizes.get(name, done))
            self._render()

    def _render(self) -> None:
        if not self.enabled:
            return
        finished = sum(self.done.values())
        fraction = finished / self.total
        elapsed = time.monotonic() - self._started
        if self.tty:
            width = 30
            bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
            tasks = "  ".join(f"{n} {self.done[n]}/{self.sizes[n]}" for n in self.sizes)
            self.stream.write(f"\r{self.label} [{bar}] {finished}/{self.total} {self.unit} "
                              f"{elapsed:5.1f}s  {tasks}"[:200].ljust(120))
            self.stream.flush()
        else:
            quarter = int(fraction * 4)
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                self.stream.write(f"{self.label}: {finished}/{self.total} {self.unit} ({fraction:.0%}) "
                                  f"after {elapsed:.1f}s\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
