"""Several server processes on one address: `shoprecs serve --workers N`.

One process answers one request at a time however many threads it has (the GIL), so N
workers (service/server.py `serve_worker`) listen on one address with SO_REUSEPORT and
share the connections the kernel spreads (bench/RESULTS.md, bench-serve). Nothing
well-kept pre-forks CherryPy, so this supervisor, which loads and answers nothing:

* checks the address is free, then starts the workers (fresh interpreters, `spawn`);
* forwards SIGHUP (reload serving/CURRENT); a worker reloaded by POST /admin/reload sends
  it SIGHUP so the others follow at once;
* on SIGTERM/SIGINT stops the workers (`service.shutdown_timeout`) and exits 0;
* replaces a worker that dies, and exits 1 when `MAX_FAST_DEATHS` die within `FAST_DEATH`
  seconds of their start inside `FAST_DEATH_WINDOW` seconds: they can never work.

/metrics from any worker counts all (prometheus_client's multiprocess mode, in a folder
removed at exit: service/metrics.py). Each worker holds its own snapshot.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait

from prometheus_client import multiprocess

from service.server import serve_worker

log = logging.getLogger(__name__)
MULTIPROC_ENV, SUPERVISOR_ENV = "PROMETHEUS_MULTIPROC_DIR", "SHOPRECS_SUPERVISOR_PID"
FAST_DEATH, MAX_FAST_DEATHS, FAST_DEATH_WINDOW = 10.0, 5, 120.0


def check_address(host: str, port: int) -> None:
    """Fail if something listens on host:port: a stale server with SO_REUSEPORT would
    silently take a share of the connections."""
    if port == 0:
        raise RuntimeError("several workers need a fixed port to share, not port 0; set "
                           "service.port or --port")
    try:
        socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                             else socket.AF_INET).close()
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what "
                           "uses it or choose another service.host or service.port") from exc


class Supervisor:
    target = staticmethod(serve_worker)  # what each worker process runs

    def __init__(self, settings, host: str, port: int, threads: int, workers: int):
        if not sys.platform.startswith("linux"):  # elsewhere one listener takes them all
            raise RuntimeError("service.workers > 1 needs Linux's SO_REUSEPORT; run one here")
        self.settings, self.address, self.threads, self.count = (settings, (host, port),
                                                                 threads, workers)
        self._workers: dict[int, tuple[multiprocessing.Process, float]] = {}  # slot: (p, t0)
        self._signals: list[int] = []
        self._fast_deaths: list[float] = []

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT: 0, or 1 when workers kept dying or stopped badly."""
        check_address(*self.address)
        handlers = {sig: signal.signal(sig, lambda signum, _: self._signals.append(signum))
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="shoprecs-metrics-")
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        try:
            for slot in range(self.count):
                self._start(slot)
            code = self._loop()
        finally:
            clean = self._stop_all()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)
            os.environ.pop(SUPERVISOR_ENV)
        return code if clean else 1

    def _start(self, slot: int) -> None:
        proc = multiprocessing.get_context("spawn").Process(target=self.target, args=(
            self.settings, *self.address, self.threads, log.getEffectiveLevel(), slot))
        # the child inherits the mask: a SIGHUP sent while it boots waits instead of killing
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        self._workers[slot] = (proc, time.monotonic())
        log.info("worker %d started (pid %d) for http://%s:%d/", slot, proc.pid, *self.address)

    def _loop(self) -> int:
        while True:  # signals are noted by their handlers, acted on here
            sentinels = {proc.sentinel: slot for slot, (proc, _) in self._workers.items()}
            ready = wait(sentinels, timeout=0.1)
            while self._signals:
                signum = self._signals.pop(0)
                if signum != signal.SIGHUP:
                    log.info("%s: stopping the workers", signal.Signals(signum).name)
                    return 0
                self._send(signal.SIGHUP)
            for slot in (sentinels[s] for s in ready):
                proc, started = self._workers[slot]
                proc.join()
                multiprocess.mark_process_dead(proc.pid)
                now = time.monotonic()
                self._fast_deaths = [t for t in self._fast_deaths if now - t < FAST_DEATH_WINDOW]
                self._fast_deaths += [now] if now - started < FAST_DEATH else []
                log.error("worker %d (pid %d) exited with %s after %.0f s", slot, proc.pid,
                          proc.exitcode, now - started)
                if len(self._fast_deaths) >= MAX_FAST_DEATHS:
                    log.error("workers keep dying right after they start; giving up. Their "
                              "log lines above say why (a broken snapshot, the port, config)")
                    return 1
                self._start(slot)

    def _send(self, signum: int) -> None:
        for proc, _ in self._workers.values():
            if proc.is_alive():
                os.kill(proc.pid, signum)

    def _stop_all(self) -> bool:
        """SIGTERM, then SIGKILL past the shutdown timeout; whether all stopped cleanly."""
        self._send(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.service.shutdown_timeout + 5
        for slot, (proc, _) in self._workers.items():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %d (pid %d) did not stop in time; killing it", slot, proc.pid)
                proc.kill()
                proc.join()
        codes = {proc.pid: proc.exitcode for proc, _ in self._workers.values()}
        self._workers.clear()
        log.log(logging.ERROR if any(codes.values()) else logging.INFO,
                "workers stopped with exit codes %s (pid: code)", codes)
        return not any(codes.values())


def notify_siblings() -> None:
    """Ask the supervisor (if this process is a worker) to tell every worker to reload."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() == int(supervisor):
        os.kill(int(supervisor), signal.SIGHUP)
