"""Erasure requests taken by the API (POST /admin/forget), carried out off the request path.

    POST /admin/forget {"phone"}  -> 202 {"job", "state": "queued", "follow"}
    GET  /admin/forget/<job>      -> the job: queued, waiting (who holds the warehouse),
                                     running, done (what was removed), deferred or failed

On the request thread only the cheap part runs: the phone is keyed, the request recorded in
every register (the service answers the shopper as unknown from then on) and noted as
pending (privacy/ `defer`), so that the nightly run finishes it if this process
cannot. The erasure itself runs in one thread per worker process, one job after another,
under the warehouse lock (core/locks.py): jobs of several workers, and of several threads,
queue behind one another; a job that finds a nightly run holding the warehouse waits for it
(saying so in its state) up to lock.wait_seconds, then is left to that night's privacy step
("deferred"). Each job's state is a small file, privacy/jobs/<job>.json, so any worker
answers for any job; it names the shopper by the first 12 characters of their key only
(the register, privacy/forgotten/, holds the key itself).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import secrets
import threading
from pathlib import Path

from core.errors import WarehouseBusy

log = logging.getLogger(__name__)

JOBS = Path("privacy") / "jobs"
KEEP_DAYS = 30  # finished jobs' state files are kept this long


class Erasures:
    """The erasure jobs of one worker process."""

    def __init__(self, settings):
        self.settings = settings
        self.folder = settings.root / JOBS
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, phone: str) -> dict:
        """Record the request and queue its erasure; the job's first state. InvalidPhone
        for a phone that is none."""
        from privacy import erasure

        recorded = erasure.defer(self.settings, phone)
        job = {"job": secrets.token_hex(8), "shopper": recorded["key"][:12],
               "requested_at": recorded["requested_at"], "state": "queued",
               "detail": "the erasure starts when the jobs before it are done"}
        self._save(job)
        self._queue.put((job, phone))
        self._start()
        return job

    def state(self, job_id: str) -> dict | None:
        if not job_id.isalnum():
            return None
        try:
            return json.loads((self.folder / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def _save(self, job: dict, **change) -> None:
        from core.files import atomic_write

        job.update(change, updated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        atomic_write(self.folder / f"{job['job']}.json", json.dumps(job))

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shoprecs-erasure",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job, phone = self._queue.get()
            try:
                self._erase(job, phone)
            except Exception as exc:  # noqa: BLE001 - the next job must still run
                log.exception("erasure job %s failed", job["job"])
                self._save(job, state="failed", detail=f"{type(exc).__name__}: {exc}; the "
                           "nightly run's privacy step tries again")
            self._prune()

    def _erase(self, job: dict, phone: str) -> None:
        from privacy import erasure

        def waiting(holder: str) -> None:
            self._save(job, state="waiting", detail=f"{holder} holds the warehouse; the "
                       "erasure runs as soon as it is done")

        self._save(job, state="running", detail="")
        try:
            done = erasure.forget(self.settings, phone, on_wait=waiting)
        except WarehouseBusy as exc:
            self._save(job, state="deferred", detail=f"{exc}; the nightly run's privacy "
                       "step finishes the erasure")
            return
        self._save(job, state="done", detail="", removed=done["removed"])
        log.info("erasure job %s done: %s", job["job"], done["removed"])

    def _prune(self) -> None:
        limit = (dt.datetime.now(dt.UTC) - dt.timedelta(days=KEEP_DAYS)).timestamp()
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                pass
