"""Every error leaves the API as `{"error": {"code": ..., "message": ...}}`, never a trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code for the JSON body."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(description=message)
        self.code = status
        self.error_code = error_code


def _error_body(exc: HTTPException):
    code = getattr(exc, "error_code", None) or (exc.name or "error").lower().replace(" ", "_")
    response = jsonify(error={"code": code, "message": exc.description})
    response.status_code = exc.code or 500
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception):
    log.exception("unhandled error")  # the trace goes to the log, never to the client
    return _error_body(InternalServerError("internal error; the operator has the details"))


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _error_body)
    app.register_error_handler(Exception, _unexpected)
