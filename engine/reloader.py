"""EngineHolder: the engine being served, swapped for a new one when CURRENT moves.

A reload reads serving/CURRENT; if it names another version, that snapshot is loaded
beside the one serving, self-checked, and only then does one attribute assignment make
it the served engine (readers take `holder.engine` once per request, so every request
sees one whole version). A snapshot that fails to load or to check is refused, logged
and counted, and the old engine keeps serving; the same broken version is not retried
until CURRENT changes again (or `force=True`).

Triggers: `start_polling(interval)` (a daemon thread), and anything that calls
`reload()` (SIGHUP and POST /admin/reload in the service).

Versions come from the snapshot folder under `root` unless a `source` is given: any
object with `current_version()`, `load(version)` and a `pointer` description, such as
engine.mongo_engine.MongoSource (which follows MongoDB's serving.current document).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.recommender import RecommendationEngine
from engine.snapshot import Snapshot, SnapshotError, current_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    status: str  # "reloaded", "unchanged", "refused" or "empty" (nothing published)
    version: str | None  # the version serving afterwards
    detail: str = ""


class _SnapshotFolder:
    """The default source: serving/CURRENT and serving/<version>/ under the warehouse."""

    def __init__(self, root: Path):
        self.root, self.pointer = root, str(root / "serving" / "CURRENT")

    def current_version(self) -> str | None:
        return current_version(self.root)

    def load(self, version: str) -> Snapshot:
        return Snapshot.load(self.root / "serving" / version)


class EngineHolder:
    def __init__(self, root: str | Path, make_engine: Callable[[Snapshot], RecommendationEngine],
                 engine: RecommendationEngine | None = None, source=None):
        self.root = Path(root)
        self.source = source if source is not None else _SnapshotFolder(self.root)
        self.engine = engine
        self.loaded_at = time.time() if engine is not None else None
        self._make_engine = make_engine
        self._lock = threading.Lock()  # one reload at a time; readers never take it
        self._refused: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[ReloadResult], None]] = []

    @property
    def version(self) -> str | None:
        engine = self.engine
        return engine.version if engine is not None else None

    def reload(self, force: bool = False) -> ReloadResult:
        """Serve the version serving/CURRENT names, if it differs and passes its checks."""
        with self._lock:
            result = self._reload(force)
        for listener in self.listeners:
            listener(result)
        return result

    def _reload(self, force: bool) -> ReloadResult:
        served = self.version
        wanted = self.source.current_version()
        if wanted is None:
            return ReloadResult("empty", served, f"{self.source.pointer} is missing")
        if wanted == served or (wanted == self._refused and not force):
            return ReloadResult("unchanged", served)
        try:
            engine = self._make_engine(self.source.load(wanted))
            if engine.version != wanted:
                raise SnapshotError(f"version {wanted}'s manifest says version "
                                    f"{engine.version!r}")
            engine.self_check()
        except Exception as exc:  # anything wrong with the new version must not stop serving
            self._refused = wanted
            detail = (f"refused version {wanted}: {exc}; still serving {served}. Fix or "
                      "re-publish it, or `shoprecs rollback`")
            log.error(detail)
            return ReloadResult("refused", served, detail)
        self.engine, self.loaded_at, self._refused = engine, time.time(), None
        log.info("now serving version %s (was %s)", wanted, served)
        return ReloadResult("reloaded", wanted)

    def start_polling(self, interval: float) -> None:
        """Reload every `interval` seconds in a daemon thread (no-op if interval <= 0)."""
        if interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(interval,),
                                        name="shoprecs-reload", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.reload()
            except Exception:  # a poll must never die: log and try again next time
                log.exception("polling serving/CURRENT failed")
