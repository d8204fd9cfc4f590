"""Hosts the Flask app in CherryPy, with Paste's TransLogger writing access logs.

Phone numbers never reach the access log: request paths are masked before logging.

Run with: shoprecs serve --port 8080
"""
from __future__ import annotations

import logging

import cherrypy
from paste.translogger import TransLogger

from shoprecs.phones import mask


class MaskedTransLogger(TransLogger):
    """Apache combined log lines with anything phone-like in the URI masked."""

    def write_log(self, environ, method, req_uri, start, status, bytes):
        super().write_log(environ, method, mask(req_uri), start, status, bytes)


def serve(app, host: str = "127.0.0.1", port: int = 8080, threads: int = 16) -> None:
    """Serve `app` until SIGTERM/SIGINT (CherryPy's engine shuts down gracefully)."""
    logging.getLogger("shoprecs.access").setLevel(logging.INFO)
    cherrypy.tree.graft(MaskedTransLogger(app, logger_name="shoprecs.access",
                                          setup_console_handler=False,
                                          set_logger_level=None), "/")
    cherrypy.config.update({
        "environment": "production",
        "server.socket_host": host,
        "server.socket_port": port,
        "server.thread_pool": threads,
        "engine.autoreload.on": False,
        "log.screen": False,
        "checker.on": False,
    })
    # /ready answers 503 until every start listener (the HTTP server's included, priority
    # 75) has run: a SIGTERM while CherryPy is still STARTING makes it exit with code 70.
    app.extensions["shoprecs.started"] = False
    cherrypy.engine.subscribe(
        "start", lambda: app.extensions.__setitem__("shoprecs.started", True), priority=90)
    cherrypy.engine.subscribe(
        "stop", lambda: app.extensions.__setitem__("shoprecs.started", False), priority=10)
    cherrypy.engine.signals.subscribe()
    cherrypy.engine.start()
    cherrypy.engine.block()
