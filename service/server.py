"""Hosts the Flask app in CherryPy, with Paste's TransLogger writing access logs.

* Worker threads, listen backlog, accepted-connection queue, idle keep-alive connections,
  socket timeout, header and body size limits: all from `service.*` settings.
* Errors the HTTP layer answers itself (413 body or headers too large, 414, 400 for a
  malformed request line) have the API's JSON error body too.
* SIGTERM (and Ctrl-C): CherryPy stops accepting, lets requests in flight finish for up
  to `service.shutdown_timeout` seconds, and the process exits 0.
* SIGHUP reloads serving/CURRENT (instead of CherryPy's default restart-or-exit); a poll
  thread does the same every `service.reload_interval` seconds.
* Several worker processes on one port: service/workers.py (`service.workers`).
* Access log: Apache combined lines on stderr, phone numbers masked, written in batches
  (service/accesslog.py). cheroot's adjustments for speed: service/_http.py.

Run with: shoprecs serve --port 8080
"""
from __future__ import annotations

import gc
import logging
import sys
import threading

import cherrypy

from service._http import Server
from service.accesslog import AccessLog, MaskedTransLogger

log = logging.getLogger(__name__)


def _http_server(settings, reuse_port: bool = False) -> Server:
    server = Server(cherrypy.server)
    server.keep_alive_conn_limit = settings.service_keepalive_limit
    server.reuse_port = reuse_port  # several workers on one port (service/workers.py)
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
    cherrypy.tree.graft(MaskedTransLogger(app, access_log, setup_console_handler=False,
                                          set_logger_level=None), "/")
    cherrypy.config.update({
        "environment": "production",
        "server.socket_host": host,
        "server.socket_port": port,
        "server.thread_pool": threads,
        "server.socket_queue_size": settings.service_socket_queue_size,
        "server.accepted_queue_size": settings.service_accepted_queue_size,
        "server.socket_timeout": settings.service_socket_timeout,
        "server.shutdown_timeout": settings.service_shutdown_timeout,
        "server.max_request_header_size": settings.service_max_header_bytes,
        "server.max_request_body_size": settings.service_max_body_bytes,
        "engine.autoreload.on": False,
        "log.screen": False,
        "checker.on": False,
    })
    bus = cherrypy.engine
    cherrypy.server.instance = _http_server(settings, reuse_port)
    if reuse_port:
        bus.unsubscribe("start", cherrypy.server.start)
        bus.subscribe("start", _start_sharing_port, priority=75)
        bus.unsubscribe("stop", cherrypy.server.stop)
        bus.subscribe("stop", _stop_sharing_port, priority=25)
    holder = app.extensions["shoprecs.holder"]
    # /ready answers 503 until every start listener (the HTTP server's included, priority
    # 75) has run: a SIGTERM while CherryPy is still STARTING makes it exit with code 70.
    app.extensions["shoprecs.started"] = False
    bus.subscribe("start", lambda: app.extensions.__setitem__("shoprecs.started", True),
                  priority=90)
    bus.subscribe("stop", lambda: app.extensions.__setitem__("shoprecs.started", False),
                  priority=10)
    bus.subscribe("start", lambda: holder.start_polling(settings.service_reload_interval))
    bus.subscribe("stop", holder.stop_polling)
    bus.subscribe("start", access_log.start)
    bus.subscribe("stop", access_log.stop, priority=90)  # after requests in flight finished
    # a reload takes seconds; the signal handler only starts it
    bus.signal_handler.handlers["SIGHUP"] = lambda: reload_in_background(holder)
    bus.signals.subscribe()


def reload_in_background(holder) -> None:
    """What SIGHUP does: load serving/CURRENT again (forced), in a thread of its own."""
    threading.Thread(target=holder.reload, kwargs={"force": True},
                     name="shoprecs-sighup").start()


def _start_sharing_port() -> None:
    """CherryPy's server start for a worker sharing its port (SO_REUSEPORT): the same, less
    its check that nothing answers on the port yet, since the sibling workers do. Anything
    else on the port makes cheroot's bind fail, and the supervisor checked it was free."""
    adapter = cherrypy.server
    if adapter.running:
        return
    adapter.interrupt = None
    if not adapter.httpserver:
        adapter.httpserver, adapter.bind_addr = adapter.httpserver_from_self()
    threading.Thread(target=adapter._start_http_thread, name="HTTPServer").start()
    adapter.wait()
    adapter.running = True
    adapter.bus.log(f"Serving on {adapter.description}, the port shared with other workers")


def _stop_sharing_port() -> None:
    """CherryPy's server stop, less its check that the port is free afterwards: the sibling
    workers still answer on it (the check failing made a worker exit with code 70)."""
    adapter = cherrypy.server
    if not adapter.running:
        return
    adapter.httpserver.stop()
    adapter.running = False
    adapter.bus.log(f"HTTP Server {adapter.httpserver!r} shut down")


def _freeze_loaded(result=None) -> None:
    """Put what is alive now (the app, the engine's indexes) out of the cyclic GC's reach.

    A full collection walked the served engine's ~100k containers holding the GIL for
    60-100 ms, every request in flight waiting: the open loop's p99. Frozen objects are
    still freed by reference counting (an old engine has no cycles), so this runs after
    each load, behind one collection so no garbage cycle of the load is frozen with it."""
    if result is None or result.status == "reloaded":
        gc.collect()
        gc.freeze()


def _lean_logging() -> None:
    """Skip what no log line of ours shows: the caller's frame, thread and process names
    (the Python logging HOWTO's "Optimization" section): finding the caller's frame cost
    more than answering a lookup when access lines were one record each."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def serve(app, host: str = "127.0.0.1", port: int = 8080, threads: int = 16,
          reuse_port: bool = False) -> None:
    """Serve `app` until SIGTERM/SIGINT (CherryPy's engine shuts down gracefully)."""
    _lean_logging()
    configure(app, app.extensions["shoprecs.settings"], host, port, threads, reuse_port)
    app.extensions["shoprecs.holder"].listeners.append(_freeze_loaded)
    _freeze_loaded()
    cherrypy.engine.start()
    cherrypy.engine.block()
