"""Several server processes on one address: `shoprecs serve --workers N`.

One Python process answers one request at a time however many threads it has (the GIL):
on 2 cores one process topped out near 4,000 requests/s, and at 3,000/s its p99 was
7-28 ms of queueing. With N workers, each a whole `shoprecs serve` (its own engine,
CherryPy and access log) listening on the same host and port with SO_REUSEPORT, the
kernel spreads connections across them (bench/RESULTS.md, bench-serve).

This process, the supervisor, loads nothing and answers nothing. It

* checks the address is free, then starts the workers (fresh interpreters, `spawn`);
* forwards SIGHUP to every worker: each reloads serving/CURRENT. A worker that reloads on
  POST /admin/reload sends its supervisor SIGHUP, so the others follow at once rather
  than at their next poll;
* forwards SIGTERM and SIGINT, waits for the workers to finish the requests in flight
  (`service.shutdown_timeout`), and exits 0;
* restarts a worker that dies, and gives up (exit 1) when workers keep dying soon after
  their start (`_MAX_FAST_DEATHS` within `_FAST_DEATH_WINDOW` seconds): a snapshot or a
  port that can never work.

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
WORKER_ENV = "SHOPRECS_WORKER"  # which worker (slot 0..N-1) a process is
_FAST_DEATH = 10.0  # seconds: a worker dying sooner than this after its start counts ...
_MAX_FAST_DEATHS = 5  # ... and this many ...
_FAST_DEATH_WINDOW = 120.0  # ... within this many seconds stop the supervisor


def _worker(settings, host: str, port: int, threads: int, level: int, slot: int = 0) -> None:
    """One worker: the app and CherryPy, as `shoprecs serve` with one process runs them."""
    from core.logs import configure_logging

    os.environ[WORKER_ENV] = str(slot)  # its answers' X-Worker header
    configure_logging(level, tag=f"[worker {os.getpid()}]")
    # SIGHUP (a reload) came blocked from the supervisor, since its default action kills.
    # Until CherryPy takes it over, one is only noted; the load is repeated once serving.
    hangups: list[int] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    import cherrypy

    from service import create_app
    from service.server import reload_in_background, serve

    threading.Thread(target=_exit_with, args=(os.getppid(),), name="shoprecs-orphan",
                     daemon=True).start()
    app = create_app({"SETTINGS": settings})

    def catch_up() -> None:  # CherryPy's SIGHUP handler is in place by now
        if hangups:
            reload_in_background(app.extensions["shoprecs.holder"])

    cherrypy.engine.subscribe("start", catch_up, priority=95)
    serve(app, host, port, threads, reuse_port=True)
    # Stopped. The interpreter's shutdown puts SIGHUP back to its default action, which
    # would turn a late reload into a death by signal instead of a clean exit.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


def _exit_with(supervisor: int) -> None:
    """Stop this worker (gracefully, as SIGTERM does) if its supervisor dies without
    stopping it, e.g. killed with SIGKILL, so no orphan keeps a share of the port."""
    while os.getppid() == supervisor:
        time.sleep(1)
    log.error("supervisor %d is gone; stopping", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


def check_address(host: str, port: int) -> None:
    """Fail now, with a clear message, if something already listens on host:port (on any
    address the name resolves to, as cheroot resolves it).

    Without this, a forgotten server of the same user that also set SO_REUSEPORT would
    silently take a share of the connections."""
    if port == 0:
        raise RuntimeError("several workers need a fixed port to share, not port 0; set "
                           "service.port or --port")
    try:
        addresses = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise RuntimeError(f"cannot resolve service.host {host!r}: {exc}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise RuntimeError(f"cannot listen on {host}:{port} ({address[0]}): "
                                   f"{exc.strerror}; stop what uses it or choose another "
                                   "service.port") from exc


class Supervisor:
    target = staticmethod(_worker)  # what each worker process runs

    def __init__(self, settings, host: str, port: int, threads: int, workers: int):
        if not sys.platform.startswith("linux"):
            # elsewhere SO_REUSEPORT gives every connection to one of the listeners
            raise RuntimeError("service.workers > 1 needs Linux, whose SO_REUSEPORT spreads "
                               "connections over the workers; run one worker here")
        self.settings, self.host, self.port = settings, host, port
        self.threads, self.count = threads, workers
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, tuple[multiprocessing.Process, float]] = {}  # slot -> ...
        self._signals: list[int] = []
        self._fast_deaths: list[float] = []  # when workers died soon after their start

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code for the process: 0, or 1 when the
        workers kept dying or did not all stop cleanly."""
        check_address(self.host, self.port)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        handlers = {sig: signal.signal(sig, self._note)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        metrics_dir = None
        try:
            metrics_dir = tempfile.mkdtemp(prefix="shoprecs-metrics-")
            # inherited by the workers, read by prometheus_client when they import it
            os.environ[MULTIPROC_ENV] = metrics_dir
            os.environ[SUPERVISOR_ENV] = str(os.getpid())
            for slot in range(self.count):
                self._start(slot)
            log.info("started %d workers for http://%s:%d/ (%d threads each)", self.count,
                     self.host, self.port, self.threads)
            code = self._loop(wake_r)
        finally:
            clean = self._stop_all()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
            for name in (MULTIPROC_ENV, SUPERVISOR_ENV):
                os.environ.pop(name, None)
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return code if clean else 1

    def _note(self, signum, frame) -> None:
        self._signals.append(signum)  # handled in _loop, outside the signal handler

    def _start(self, slot: int) -> None:
        proc = self._context.Process(
            target=self.target, name=f"shoprecs-worker-{slot}", daemon=False,
            args=(self.settings, self.host, self.port, self.threads,
                  logging.getLogger().getEffectiveLevel(), slot))
        # The new interpreter inherits the signal mask: a SIGHUP forwarded while it boots
        # stays pending until _worker can take it, rather than killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
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
                if sentinel in sentinels and not self._restart(sentinels[sentinel]):
                    return 1

    def _restart(self, slot: int) -> bool:
        proc, started = self._workers[slot]
        proc.join()
        self._mark_dead(proc.pid)
        now = time.monotonic()
        lived = now - started
        if lived < _FAST_DEATH:
            self._fast_deaths.append(now)
        self._fast_deaths = [t for t in self._fast_deaths if now - t < _FAST_DEATH_WINDOW]
        log.error("worker %d (pid %d) exited with %s after %.0f s; starting another", slot,
                  proc.pid, proc.exitcode, lived)
        if len(self._fast_deaths) >= _MAX_FAST_DEATHS:
            log.error("workers keep dying right after they start; giving up. Their log "
                      "lines above say why (a broken snapshot, the port, the config)")
            return False
        self._start(slot)
        return True

    def _send(self, signum: int) -> None:
        for proc, _ in self._workers.values():
            if proc.is_alive():
                os.kill(proc.pid, signum)

    def _stop_all(self) -> bool:
        """Stop every worker (SIGTERM, then SIGKILL after the shutdown timeout); whether
        they all stopped cleanly."""
        self._send(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.service.shutdown_timeout + 5
        clean = True
        for slot, (proc, _) in self._workers.items():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %d (pid %d) did not stop in time; killing it", slot,
                          proc.pid)
                proc.kill()
                proc.join()
            if proc.exitcode != 0:
                clean = False
                log.error("worker %d (pid %d) stopped with exit code %s", slot, proc.pid,
                          proc.exitcode)
        self._workers.clear()
        return clean

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
