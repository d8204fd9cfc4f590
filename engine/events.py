"""What the storefront was shown, and what shoppers did with it: recorded off the request path.

    events/impressions/dt=YYYY-MM-DD/hour=HH/part-<host>-<pid>-<token>.jsonl
    events/feedback/dt=YYYY-MM-DD/hour=HH/part-<host>-<pid>-<token>.jsonl

An impression is one storefront answer: its recommendation id, the time (UTC), the
shopper's key (the HMAC of the phone, never the phone; null when the request named no
shopper), the route, the model version, the experiment and arm, the variant, the sources
and the goods shown, in order. Feedback is a click or an add-to-cart on a recommended goods,
sent by the storefront to POST /events with an event id of its own (the attribution job
counts each event id once, so a retried POST counts once). Purchases need no call: the
next nights' orders are the conversions (experiments/attribution.py).

`EventLog.record` never blocks and never fails a request: it appends to a bounded queue
and returns. A writer thread takes what has gathered every `interval` seconds (or as soon
as `batch` events wait) and appends it, one JSON line per event, to this process's file for
the event's hour, flushed to the operating system: a worker killed with SIGKILL loses at
most the events of its last interval. When the writer falls behind (a slow or full disk),
the queue stops at `max_pending` events and what does not fit is dropped and counted
(`on_dropped`, shown in /metrics), so memory stays bounded. A batch a sink refused is
retried at the next interval. Each process writes files of its own, so any number of
worker processes share the folder safely; with MongoDB serving, events also go to its
`impressions` and `feedback` collections.
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cachetools import LRUCache, cached

from core.files import flock

log = logging.getLogger(__name__)

EVENTS_DIR = Path("events")
ATTRIBUTION_DIR = Path("reports") / "attribution"  # <date>.json: experiments/attribution.py


def now_iso(when: float | None = None) -> str:
    """UTC as ISO 8601 with milliseconds and a Z, as events carry it."""
    moment = dt.datetime.fromtimestamp(time.time() if when is None else when, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecommendationIds:
    """Unique ids for answers, signed so that feedback can name only ids the service issued:
    a random prefix per process, a counter (no lock, no system call per id), and a MAC of
    both under `secret`, which every worker of the service shares (BLAKE2b in its keyed
    mode, a third of HMAC-SHA256's cost on the request path):
    `3f9a0c1d2e4b-1a.5d0c8e2b9a7f6e31`."""

    PATTERN = r"^[0-9a-f]{12}-[0-9a-f]{1,16}\.[0-9a-f]{16}$"

    def __init__(self, secret: bytes):
        self.prefix = secrets.token_hex(6)
        self._secret = secret
        self._count = itertools.count(1).__next__  # next() is atomic under the GIL

    @classmethod
    def for_key(cls, hmac_key: str) -> RecommendationIds:
        """Ids signed with a secret derived from the shop's HMAC key (privacy.hmac_key)."""
        return cls(hmac.digest(hmac_key.encode(), b"shoprecs recommendation ids", "sha256"))

    def _sign(self, unsigned: str) -> str:
        return hashlib.blake2b(unsigned.encode(), key=self._secret, digest_size=8).hexdigest()

    def __call__(self) -> str:
        unsigned = f"{self.prefix}-{self._count():x}"
        return f"{unsigned}.{self._sign(unsigned)}"

    def issued(self, rec_id: str) -> bool:
        """Whether `rec_id` is one this service (any of its workers) issued."""
        unsigned, _, signature = rec_id.rpartition(".")
        return hmac.compare_digest(signature, self._sign(unsigned))


def bytes_written(root: str | os.PathLike, kind: str, day: str) -> int:
    """The size of every file of `kind` events written for the UTC `day` (YYYY-MM-DD)."""
    total = 0
    for path in (Path(root) / EVENTS_DIR / kind / f"dt={day}").glob("hour=*/*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _same_file(out) -> bool:
    try:
        return os.fstat(out.fileno()).st_ino == os.stat(out.name).st_ino
    except FileNotFoundError:
        return False


class FileSink:
    """Appends events to hourly partitions of the warehouse, one file per process and hour."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / EVENTS_DIR
        self._name = f"part-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}.jsonl"
        self._open: dict[tuple[str, str], object] = {}  # (kind, dt/hour) -> file

    def write(self, kind: str, events: list[dict]) -> None:
        by_hour: dict[str, list[str]] = {}
        for event in events:
            stamp = event["time"]  # 2026-12-05T18:30:00.123Z
            by_hour.setdefault(f"dt={stamp[:10]}/hour={stamp[11:13]}", []).append(
                json.dumps(event, ensure_ascii=False, separators=(",", ":")))
        for hour, lines in by_hour.items():
            while True:
                out = self._file(kind, hour)
                # An erasure or a key rotation (privacy/) rewrites a file under this lock
                # and renames the new one over it: a writer that finds its file replaced
                # opens the new one, so no line is lost or written to the old one.
                with flock(out):
                    if _same_file(out):
                        out.write("\n".join(lines) + "\n")
                        out.flush()
                        break
                self._open.pop((kind, hour)).close()

    def _file(self, kind: str, hour: str):
        out = self._open.get((kind, hour))
        if out is None:
            for key in [k for k in self._open if k[0] == kind]:  # the hour before is done
                self._open.pop(key).close()
            folder = self.root / kind / hour
            folder.mkdir(parents=True, exist_ok=True)
            out = self._open[(kind, hour)] = open(folder / self._name, "a", encoding="utf-8")
        return out

    def close(self) -> None:
        for out in self._open.values():
            out.close()
        self._open.clear()


class MongoSink:
    """Inserts events into the `impressions` and `feedback` collections (unordered; an
    event already there, by its id, is skipped)."""

    def __init__(self, db):
        self.db = db

    def write(self, kind: str, events: list[dict]) -> None:
        from engine.mongo import insert_unordered

        insert_unordered(self.db[kind], [{"_id": e["id"], **e} for e in events])

    def close(self) -> None:
        pass


Counted = Callable[[str, int], None]


class EventLog:
    """Events queued by request threads and written in batches by one thread (see above)."""

    def __init__(self, sinks: list, *, interval: float = 0.5, batch: int = 2000,
                 max_pending: int = 50_000, on_written: Counted | None = None,
                 on_dropped: Counted | None = None,
                 forgotten: Callable[[], Mapping[str, str]] | None = None):
        self.sinks, self.interval, self.batch, self.max_pending = sinks, interval, batch, \
            max_pending
        self._on_written = on_written or (lambda kind, n: None)
        self._on_dropped = on_dropped or (lambda kind, n: None)
        # shoppers who asked to be forgotten (engine/forgotten.py): their events are written
        # without their key, even those queued before the request
        self._forgotten = forgotten or dict
        self._pending: collections.deque[tuple[str, dict]] = collections.deque()
        self._retry: list[tuple[str, dict]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = collections.Counter()
        self.dropped = collections.Counter()

    def record(self, kind: str, event: dict) -> bool:
        """Queue one event (never blocks); False if it was dropped (the queue is full).
        `event["time"]` may be epoch seconds: the writer formats it."""
        if self._thread is None:
            self.start()
        if len(self._pending) >= self.max_pending:
            self._drop(kind, 1)
            return False
        self._pending.append((kind, event))
        if len(self._pending) >= self.batch:
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._retry)

    def _drop(self, kind: str, n: int) -> None:
        self.dropped[kind] += n
        self._on_dropped(kind, n)

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="shoprecs-events",
                                                daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer (the server's shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        for sink in self.sinks:
            sink.close()

    def flush(self) -> None:
        """Write everything queued now, in this thread."""
        with self._write_lock:  # the only taker: what is queued now stays there to be taken
            taken, self._retry = self._retry, []
            taken += [self._pending.popleft() for _ in range(len(self._pending))]
            if taken:
                self._write(taken)

    def _write(self, taken: list[tuple[str, dict]]) -> None:
        by_kind: dict[str, list[dict]] = {}
        gone = self._forgotten()
        for kind, event in taken:
            if gone and event.get("shopper") in gone:
                event["shopper"] = None
            if not isinstance(event["time"], str):  # epoch seconds, as request threads pass
                event["time"] = now_iso(event["time"])
            by_kind.setdefault(kind, []).append(event)
        for kind, events in by_kind.items():
            try:
                for sink in self.sinks:
                    sink.write(kind, events)
            except Exception as exc:  # noqa: BLE001 - a bad disk must not stop the writer
                room = max(0, self.max_pending - len(self._retry))
                self._retry.extend((kind, e) for e in events[:room])
                if len(events) > room:
                    self._drop(kind, len(events) - room)
                log.warning("writing %d %s failed (%s); retrying in %.1f s", len(events),
                            kind, exc, self.interval)
                continue
            self.written[kind] += len(events)
            self._on_written(kind, len(events))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive anything
                log.exception("writing events failed")


def attribution_reports(root: str | os.PathLike, last: int = 60) -> list[dict]:
    """The nightly attribution's reports of the last `last` nights, oldest first (each
    file read again only when it changed)."""
    folder = Path(root) / ATTRIBUTION_DIR
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json")[-last:]
    except FileNotFoundError:
        return []
    found = []
    for path in paths:
        try:
            found.append(_report(path, path.stat().st_mtime))
        except (OSError, ValueError) as exc:
            log.warning("attribution report %s unreadable (%s): skipped", path, exc)
    return found


@cached(LRUCache(maxsize=256), lock=threading.Lock())
def _report(path: Path, mtime: float) -> dict:  # a new mtime: read again
    return json.loads(path.read_text())
