"""Routes for operators: /models, /health, /ready, /metrics, /openapi.json, /admin/reload."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.auth import HEADER, require_key
from service.errors import ApiError
from service.openapi import document
from service.routes import engine
from service.workers import notify_siblings

bp = Blueprint("ops", __name__)


@bp.get("/models")
def models():
    return jsonify(engine().info())


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    served = current_app.extensions["shoprecs.holder"].engine
    if served is None or not current_app.extensions.get("shoprecs.started", True):
        return jsonify(status="not ready", version=None), 503
    return jsonify(status="ready", version=served.version)


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions["shoprecs.metrics"].exposition
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


@bp.post("/admin/reload")
def admin_reload():
    """Load serving/CURRENT now; 409 (and the old version keeps serving) if it is broken."""
    require_key(request.headers.get(HEADER), current_app.extensions["shoprecs.admin_keys"],
                "admin", "SHOPRECS_ADMIN_API_KEYS")
    result = current_app.extensions["shoprecs.holder"].reload(force=True)
    if result.status == "reloaded":
        notify_siblings()  # other worker processes, if any, follow now
    if result.status == "refused":
        raise ApiError(409, "reload_refused", result.detail)
    return jsonify(status=result.status, version=result.version, detail=result.detail)
