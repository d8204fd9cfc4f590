"""One writing run at a time per warehouse.

Every command and Airflow task that writes to the warehouse runs inside `warehouse_lock`
(pipeline/ takes it for each step, privacy/ for each job); the service takes it only to run
an erasure job (service/erasure.py), never to answer a request.

* On the warehouse folder: an advisory `flock` on `<warehouse>/_lock/lock` (local disks,
  and NFS, where Linux maps it to a POSIX byte-range lock). The kernel (or the NFS lock
  manager) drops it when its process dies, kill -9 included, so a killed run never leaves
  it behind; `_lock/holder.json` names the holder for the waiting run's message.
* When MongoDB is a store (core/stores.py): a lease document
  `{_id: "warehouse", owner, expires_at}` in the `locks` collection as well, renewed by a
  thread every third of `lock.lease_seconds`. A holder that was killed stops renewing; the
  next run takes the lease over once it has expired.

The lock is re-entrant within a thread: `shoprecs run` holds it across its steps, and the
steps it calls take it again without waiting on themselves. Another thread, of this
process or another, waits `lock.wait_seconds` (saying every 30 s whom it waits for), then
fails with WarehouseBusy.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from core.errors import WarehouseBusy
from core.files import atomic_write, flock
from core.stores import mongo, mongo_is_a_store

log = logging.getLogger(__name__)

LOCK_DIR = "_lock"
NOTICE_EVERY = 30.0
_held = threading.local()  # .depth: warehouse -> how deep this thread holds it


def _command() -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:3]))


def holder(root: str | Path) -> dict | None:
    """Who holds (or last held) the lock of the warehouse at `root`, as it wrote it."""
    try:
        return json.loads((Path(root) / LOCK_DIR / "holder.json").read_text())
    except (OSError, ValueError):
        return None


def _describe(who: dict | None) -> str:
    if not who:
        return "another run"
    return (f"`{who.get('command', '?')}` (pid {who.get('pid')} on {who.get('host')}, "
            f"since {who.get('since', '?')[:19]})")


def _busy(what: str, root: Path, waited: float) -> WarehouseBusy:
    return WarehouseBusy(
        f"the warehouse {root} is busy: {what} holds it, and {waited:.0f} s of waiting "
        "(lock.wait_seconds) ran out; let it finish, or raise SHOPRECS_LOCK_WAIT_SECONDS")


@contextlib.contextmanager
def _file_lock(root: Path, wait: float, on_wait=None):
    """Hold `<root>/_lock/lock` (core.files.flock), waiting up to `wait` seconds and saying
    every NOTICE_EVERY seconds (to the log, and to `on_wait`) who holds it."""
    started = notice_at = time.monotonic()
    while True:
        with flock(root / LOCK_DIR / "lock", blocking=False) as held:
            if held is not None:
                me = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                      "since": dt.datetime.now(dt.UTC).isoformat()}
                atomic_write(root / LOCK_DIR / "holder.json", json.dumps(me))
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError):
                        (root / LOCK_DIR / "holder.json").unlink()
                return
        now = time.monotonic()
        waited = now - started
        if waited >= wait:
            raise _busy(_describe(holder(root)), root, waited)
        if now >= notice_at:
            who = _describe(holder(root))
            log.warning("waiting for the warehouse %s: %s holds it (up to %.0f s more, "
                        "lock.wait_seconds)", root, who, wait - waited)
            if on_wait is not None:
                on_wait(who)
            notice_at = now + NOTICE_EVERY
        time.sleep(min(0.5, wait - waited))


class MongoLease:
    """A lease document in `db.locks`: taken when free or expired, renewed while held."""

    def __init__(self, db, name: str, lease: float):
        self.coll, self.name, self.lease = db["locks"], name, lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # BSON dates are naive UTC

    def try_acquire(self) -> bool:
        from pymongo.errors import DuplicateKeyError

        now = self._now()
        doc = {"owner": self.owner, "command": _command(), "since": now,
               "expires_at": now + dt.timedelta(seconds=self.lease)}
        try:
            self.coll.find_one_and_update(
                {"_id": self.name, "$or": [{"expires_at": {"$lt": now}},
                                           {"owner": self.owner}]},
                {"$set": doc}, upsert=True)
        except DuplicateKeyError:  # held, and not expired: the upsert collided
            return False
        return True

    def holder(self) -> dict | None:
        return self.coll.find_one({"_id": self.name})

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            now = self._now()
            done = self.coll.update_one({"_id": self.name, "owner": self.owner},
                                        {"$set": {"expires_at": now + dt.timedelta(
                                            seconds=self.lease)}})
            if not done.matched_count:
                log.error("the MongoDB lock %r was taken over by another run: this run "
                          "stopped renewing it for over lock.lease_seconds", self.name)
                return

    def acquire(self, wait: float) -> None:
        started = time.monotonic()
        while not self.try_acquire():
            waited = time.monotonic() - started
            if waited >= wait:
                who = self.holder() or {}
                raise _busy(f"`{who.get('command', '?')}` ({who.get('owner', '?')}, MongoDB "
                            "lease)", Path(self.name), waited)
            time.sleep(min(1.0, max(wait - waited, 0.01)))
        self._renewer = threading.Thread(target=self._renew, name="lock-lease", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.coll.delete_one({"_id": self.name, "owner": self.owner})


@contextlib.contextmanager
def warehouse_lock(settings, wait: float | None = None, on_wait=None):
    """Hold the warehouse of `settings` (and its MongoDB lease when MongoDB is a store)
    for the block; re-entrant within the thread. `wait` defaults to lock.wait_seconds;
    `on_wait(holder)` is told who holds it, when this thread has to wait."""
    root = settings.root.resolve()
    name = str(root)
    depths = _held.__dict__.setdefault("depth", {})
    if depths.get(name):
        depths[name] += 1
        try:
            yield
        finally:
            depths[name] -= 1
        return
    wait = settings.lock.wait_seconds if wait is None else wait
    with _file_lock(root, wait, on_wait):
        lease = None
        if mongo_is_a_store(settings):
            lease = MongoLease(mongo(settings), "warehouse", settings.lock.lease_seconds)
            lease.acquire(wait)
        depths[name] = 1
        try:
            yield
        finally:
            depths.pop(name, None)
            if lease is not None:
                lease.release()
