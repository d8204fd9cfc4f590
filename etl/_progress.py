"""Progress of a long step: a tqdm bar in a terminal, a log line every few seconds otherwise."""
from __future__ import annotations

import logging
import sys
import threading

from tqdm import tqdm

log = logging.getLogger("shoprecs.progress")

_LOG_LINE = "{desc}: {n_fmt}/{total_fmt} {unit}s{postfix}, {rate_fmt}, ETA {remaining}"


class _Log:
    """What tqdm writes, as log lines (tqdm throttles them to one per `mininterval`)."""

    def write(self, text: str) -> None:
        if text.strip():
            log.info("%s", text.strip())

    def flush(self) -> None:
        pass


class Progress:
    """Counts steps (pages) and items (orders) from any thread; tqdm shows rate and ETA."""

    def __init__(self, desc: str, total: int, unit: str = "it", every_s: float = 5.0):
        self.items = 0
        self._lock = threading.Lock()
        self._bar = (tqdm(total=total, desc=desc, unit=unit) if sys.stderr.isatty() else
                     tqdm(total=total, desc=desc, unit=unit, file=_Log(), mininterval=every_s,
                          bar_format=_LOG_LINE))

    def expect(self, total: int) -> None:
        with self._lock:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, items: int = 0) -> None:
        with self._lock:
            self.items += items
            self._bar.set_postfix(items=self.items, refresh=False)
            self._bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
