"""Every error leaves the API as `{"error": {"code": ..., "message": ...}}`, never a trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code for the JSON body."""

    www_authenticate: str | None = None  # a browser page's 401 asks for Basic credentials

    def __init__(self, status: int, error_code: str, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(description=message)
        self.code = status
        self.error_code = error_code
        self.extra_headers = headers or {}


def _error_body(exc: HTTPException):
    code = getattr(exc, "error_code", None) or (exc.name or "error").lower().replace(" ", "_")
    response = jsonify(error={"code": code, "message": exc.description})
    response.status_code = exc.code or 500
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    if getattr(exc, "www_authenticate", None):
        response.headers["WWW-Authenticate"] = exc.www_authenticate
    response.headers.update(getattr(exc, "extra_headers", {}))
    return response


def _unexpected(exc: Exception):
    log.exception("unhandled error")  # the trace goes to the log, never to the client
    return _error_body(InternalServerError("internal error; the operator has the details"))


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _error_body)
    app.register_error_handler(Exception, _unexpected)
