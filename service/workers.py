"""Several server processes on one address: `shoprecs serve --workers N`.

One Python process answers one request at a time however many threads it has (the GIL):
on 2 cores one process topped out near 3,400 requests/s, and at 3,000/s its tail was
30-40 ms of queueing. With N workers, each a whole `shoprecs serve` (its own engine,
CherryPy and access log) listening on the same host and port with SO_REUSEPORT, the
kernel spreads connections across them (bench/RESULTS.md, bench-serve).

This process, the supervisor, loads nothing and answers nothing. It

* checks the address is free, then starts the workers (fresh interpreters, `spawn`);
* forwards SIGHUP to every worker: each reloads serving/CURRENT. A worker that reloads on
  POST /admin/reload sends its supervisor SIGHUP, so the others follow at once rather
  than at their next poll;
* forwards SIGTERM and SIGINT, waits for the workers to finish the requests in flight
  (`service.shutdown_timeout`), and exits 0;
* restarts a worker that dies, and gives up (exit 1) when workers keep dying within
  `_FAST_DEATH` seconds of their start: a snapshot or a port that can never work.

Metrics: prometheus_client's multiprocess mode, in a private directory removed at exit, so
/metrics from any worker counts the requests of all of them (service/metrics.py).
Memory: every worker holds its own copy of the snapshot.
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
import threading
import time
from multiprocessing.connection import wait

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_ENV = "SHOPRECS_SUPERVISOR_PID"
_FAST_DEATH = 10.0  # seconds: a worker dying sooner than this after its start counts ...
_MAX_FAST_DEATHS = 5  # ... and this many in a row stop the supervisor


def _worker(settings, host: str, port: int, threads: int, level: int) -> None:
    """One worker: the app and CherryPy, as `shoprecs serve` with one process runs them."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s "
                        f"%(name)s[worker {os.getpid()}]: %(message)s")
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from service import create_app
    from service.server import serve

    threading.Thread(target=_exit_with, args=(os.getppid(),), name="shoprecs-orphan",
                     daemon=True).start()
    serve(create_app({"SETTINGS": settings}), host, port, threads, reuse_port=True)


def _exit_with(supervisor: int) -> None:
    """Stop this worker (gracefully, as SIGTERM does) if its supervisor dies without
    stopping it, e.g. killed with SIGKILL, so no orphan keeps a share of the port."""
    while os.getppid() == supervisor:
        time.sleep(1)
    log.error("supervisor %d is gone; stopping", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


def check_address(host: str, port: int) -> None:
    """Fail now, with a clear message, if something already listens on host:port.

    Without this, a forgotten server of the same user that also set SO_REUSEPORT would
    silently take a share of the connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror}; stop what "
                               "uses it or choose another service.port") from exc


class Supervisor:
    target = staticmethod(_worker)  # what each worker process runs

    def __init__(self, settings, host: str, port: int, threads: int, workers: int):
        if not hasattr(socket, "SO_REUSEPORT"):
            raise RuntimeError("service.workers > 1 needs SO_REUSEPORT (Linux, BSD, macOS); "
                               "run one worker here")
        self.settings, self.host, self.port = settings, host, port
        self.threads, self.count = threads, workers
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[multiprocessing.Process, float]] = {}  # slot -> ...
        self._signals: list[int] = []
        self._fast_deaths = 0

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code for the process."""
        check_address(self.host, self.port)
        metrics_dir = tempfile.mkdtemp(prefix="shoprecs-metrics-")
        # inherited by the workers, read by prometheus_client when they import it
        os.environ[MULTIPROC_ENV] = metrics_dir
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        handlers = {sig: signal.signal(sig, self._note)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            for slot in range(self.count):
                self._start(slot)
            log.info("started %d workers for http://%s:%d/ (%d threads each)", self.count,
                     self.host, self.port, self.threads)
            return self._loop(wake_r)
        finally:
            self._stop_all()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
            for name in (MULTIPROC_ENV, SUPERVISOR_ENV):
                os.environ.pop(name, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _note(self, signum, frame) -> None:
        self._signals.append(signum)  # handled in _loop, outside the signal handler

    def _start(self, slot: int) -> None:
        proc = self._context.Process(
            target=self.target, name=f"shoprecs-worker-{slot}", daemon=False,
            args=(self.settings, self.host, self.port, self.threads,
                  logging.getLogger().getEffectiveLevel()))
        proc.start()
        self._workers[slot] = (proc, time.monotonic())
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def _loop(self, wake_r: int) -> int:
        while True:
            sentinels = {proc.sentinel: slot for slot, (proc, _) in self._workers.items()}
            ready = wait([*sentinels, wake_r])
            if wake_r in ready:
                os.read(wake_r, 512)
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self._send(signal.SIGHUP)
                else:
                    log.info("%s: stopping the workers", signal.Signals(signum).name)
                    return 0
            for sentinel in ready:
                if sentinel in sentinels and self._restart(sentinels[sentinel]) is False:
                    return 1

    def _restart(self, slot: int) -> bool:
        proc, started = self._workers[slot]
        proc.join()
        self._mark_dead(proc.pid)
        lived = time.monotonic() - started
        self._fast_deaths = self._fast_deaths + 1 if lived < _FAST_DEATH else 0
        log.error("worker %d (pid %d) exited with %s after %.0f s", slot, proc.pid,
                  proc.exitcode, lived)
        if self._fast_deaths >= _MAX_FAST_DEATHS:
            log.error("workers keep dying right after they start; giving up. Their log "
                      "lines above say why (a broken snapshot, the port, the config)")
            return False
        self._start(slot)
        return True

    def _send(self, signum: int) -> None:
        for proc, _ in self._workers.values():
            if proc.is_alive():
                os.kill(proc.pid, signum)

    def _stop_all(self) -> None:
        self._send(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.service_shutdown_timeout + 5
        for proc, _ in self._workers.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()
        self._workers.clear()

    @staticmethod
    def _mark_dead(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def notify_siblings() -> None:
    """Ask the supervisor (if this process is a worker) to tell every worker to reload."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() == int(supervisor):
        os.kill(int(supervisor), signal.SIGHUP)


def serve_workers(settings, host: str, port: int, threads: int, workers: int) -> None:
    sys.exit(Supervisor(settings, host, port, threads, workers).run())
