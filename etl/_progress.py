"""Progress of a long step: a tqdm bar in a terminal, a log line every few seconds otherwise."""
from __future__ import annotations

import logging
import sys
import threading
import time

from tqdm import tqdm

log = logging.getLogger("shoprecs.progress")


class Progress:
    """Counts steps (pages) and items (orders); shows rate and ETA either way."""

    def __init__(self, desc: str, total: int, unit: str = "it", every_s: float = 5.0):
        self.desc, self.total, self.unit, self.every_s = desc, total, unit, every_s
        self.done = self.items = 0
        self._started = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._bar = tqdm(total=total, desc=desc, unit=unit) if sys.stderr.isatty() else None

    def expect(self, total: int) -> None:
        with self._lock:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def advance(self, items: int = 0) -> None:
        with self._lock:
            self.done += 1
            self.items += items
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix(items=self.items, refresh=False)
            elif time.monotonic() - self._last >= self.every_s:
                self._last = time.monotonic()
                self._log()

    def _log(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        log.info("%s: %d/%d %ss, %d items, %.0f items/s, ETA %.0f s", self.desc, self.done,
                 self.total, self.unit, self.items, self.items / elapsed, eta)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done:
            self._log()
