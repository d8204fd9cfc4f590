"""Hosts the Flask app in CherryPy, with Paste's TransLogger writing access logs.

* CherryPy's engine runs the process: start, SIGTERM/Ctrl-C (stop accepting, let requests
  in flight finish for up to `service.shutdown_timeout` seconds, exit 0) and SIGHUP
  (reload serving/CURRENT instead of CherryPy's default restart). A poll thread reloads
  every `service.reload_interval` seconds too.
* The HTTP server is CherryPy's own, cheroot's WSGI server, attached to the engine with
  CherryPy's public ServerAdapter; worker threads, listen backlog, accepted-connection
  queue, idle keep-alive connections, socket timeout and header size from `service.*`.
  The body limit is Flask's (MAX_CONTENT_LENGTH), so its 413 is the API's JSON error;
  what the HTTP layer refuses itself (headers too large, a malformed request line) is
  answered in plain text, before the app runs.
* Several worker processes on one port: service/workers.py (`service.workers`) sets
  `reuse_port`, cheroot's SO_REUSEPORT option.
* Access log: Apache combined lines on stderr, phone numbers masked, written in batches
  (service/accesslog.py).

Run with: shoprecs serve --port 8080
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time

import cherrypy
from cheroot.wsgi import Server
from cherrypy.process.servers import ServerAdapter
from threadpoolctl import threadpool_limits

from service.accesslog import AccessLog, MaskedTransLogger
from service.connections import BufferedConnection

log = logging.getLogger(__name__)


def http_server(app, settings, host: str, port: int, threads: int,
                reuse_port: bool = False) -> Server:
    """cheroot's WSGI server for `app` with the limits of `settings`."""
    server = Server((host, port), app, numthreads=threads,
                    request_queue_size=settings.service.socket_queue_size,
                    timeout=settings.service.socket_timeout,
                    shutdown_timeout=settings.service.shutdown_timeout,
                    accepted_queue_size=settings.service.accepted_queue_size,
                    reuse_port=reuse_port)
    # cheroot's default keeps 10 idle keep-alive connections and closes the rest, which
    # breaks a storefront that holds more open.
    server.keep_alive_conn_limit = settings.service.keepalive_limit
    server.max_request_header_size = settings.service.max_header_bytes
    # a worker thread takes a request only once it has arrived whole (service/connections.py)
    server.ConnectionClass = BufferedConnection.for_server(
        settings.service.request_timeout, settings.service.max_body_bytes,
        settings.service.max_header_bytes)
    return server


def _access_logger() -> logging.Logger:
    """`shoprecs.access`, writing bare Apache combined lines to stderr (as TransLogger's
    console handler does) unless logging was configured for it already. A record holds a
    batch of lines (service/accesslog.py)."""
    access = logging.getLogger("shoprecs.access")
    access.setLevel(logging.INFO)
    if not access.handlers:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(console)
        access.propagate = False
    return access


def configure(app, settings, host: str, port: int, threads: int,
              reuse_port: bool = False) -> None:
    """Mount `app` in CherryPy with the limits, signals and reload hooks of `settings`."""
    access_log = AccessLog(_access_logger())
    cherrypy.tree.graft(MaskedTransLogger(app, access_log, app.extensions["shoprecs.trusted"],
                                          setup_console_handler=False,
                                          set_logger_level=None), "/")
    cherrypy.config.update({"environment": "production", "engine.autoreload.on": False,
                            "log.screen": False, "checker.on": False})
    bus = cherrypy.engine
    cherrypy.server.unsubscribe()  # CherryPy's default server: ours takes its place
    server = http_server(cherrypy.tree, settings, host, port, threads, reuse_port)
    ServerAdapter(bus, server).subscribe()
    bus.subscribe("start", lambda: log.info("serving on http://%s:%d/ (%d threads%s)", host,
                                            port, threads, ", port shared" * reuse_port),
                  priority=80)
    holder = app.extensions["shoprecs.holder"]
    # /ready answers 503 until every start listener (the HTTP server's included, priority
    # 75) has run: a SIGTERM while CherryPy is still STARTING makes it exit with code 70.
    app.extensions["shoprecs.started"] = False
    bus.subscribe("start", lambda: app.extensions.__setitem__("shoprecs.started", True),
                  priority=90)
    bus.subscribe("stop", lambda: app.extensions.__setitem__("shoprecs.started", False),
                  priority=10)
    bus.subscribe("start", lambda: holder.start_polling(settings.service.reload_interval))
    bus.subscribe("stop", holder.stop_polling)
    events = app.extensions.get("shoprecs.events")
    if events is not None:  # impressions: written until the last request has finished
        bus.subscribe("start", events.start)
        bus.subscribe("stop", events.stop, priority=90)
    bus.subscribe("start", access_log.start)
    bus.subscribe("stop", access_log.stop, priority=90)  # after requests in flight finished
    # a reload takes seconds; the signal handler only starts it
    bus.signal_handler.handlers["SIGHUP"] = lambda: reload_in_background(holder)
    bus.signals.subscribe()


def reload_in_background(holder) -> None:
    """What SIGHUP does: load serving/CURRENT again (forced), in a thread of its own."""
    threading.Thread(target=holder.reload, kwargs={"force": True},
                     name="shoprecs-sighup").start()


def serve_worker(settings, host: str, port: int, threads: int, level: int, slot: int) -> None:
    """One of the workers service/workers.py supervises: `serve` on a shared port, which
    stops when its supervisor is gone and catches up on a reload asked while it booted."""
    from core.logs import configure_logging
    from service import create_app
    configure_logging(level, tag=f"[worker {os.getpid()}]")
    hangups: list[int] = []  # SIGHUP came blocked; noted until CherryPy takes it over
    signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    supervisor = os.getppid()

    def orphaned() -> None:  # the supervisor was killed: stop, leave no share of the port
        while os.getppid() == supervisor:
            time.sleep(1)
        log.error("supervisor %d is gone; stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=orphaned, name="shoprecs-orphan", daemon=True).start()
    app = create_app({"SETTINGS": settings, "WORKER": slot})
    cherrypy.engine.subscribe("start", lambda: hangups and reload_in_background(
        app.extensions["shoprecs.holder"]), priority=95)
    serve(app, host, port, threads, reuse_port=True)
    # interpreter shutdown restores SIGHUP's default action: a late one must not kill us
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


def _freeze_loaded(result=None) -> None:
    """Put what is alive now (the app, the engine's indexes) out of the cyclic GC's reach.

    A full collection walks the served engine's containers holding the GIL while every
    request waits. Frozen objects are still freed by reference counting (an old engine
    has no cycles), so this runs after each load, behind one collection so no garbage
    cycle of the load is frozen with it."""
    if result is None or result.status == "reloaded":
        gc.collect()
        gc.freeze()


def serve(app, host: str = "127.0.0.1", port: int = 8080, threads: int = 16,
          reuse_port: bool = False) -> None:
    """Serve `app` until SIGTERM/SIGINT (CherryPy's engine shuts down gracefully)."""
    # One BLAS thread: the engine's request-time products are small, and OpenBLAS's own
    # threads spin on the cores the workers answer on (category pages of the million-
    # shopper shop: 225 req/s with them, 2,361 without; bench/RESULTS.md).
    threadpool_limits(1, user_api="blas")
    configure(app, app.extensions["shoprecs.settings"], host, port, threads, reuse_port)
    app.extensions["shoprecs.holder"].listeners.append(_freeze_loaded)
    _freeze_loaded()
    cherrypy.engine.start()
    cherrypy.engine.block()
