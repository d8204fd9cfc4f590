"""Routes for operators: /models, /health, /ready, /metrics, /openapi.json, /admin/reload."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api import endpoint
from service.auth import HEADER, require_key
from service.errors import ApiError
from service.openapi import document
from service.routes import engine
from service.workers import notify_siblings

bp = Blueprint("ops", __name__)
_OBJECT = {"type": "object"}
_STATUS = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string"}, "version": {"type": ["string", "null"]}}}


@endpoint(bp, "/models", summary="The version served, when and on what data it was trained, "
          "its metrics and what the holdout chose", answer={
              "type": "object", "required": ["version"]}, errors=(503,))
def models():
    return jsonify(engine().info())


@endpoint(bp, "/health", summary="Liveness: 200 while the process lives", answer=_OBJECT)
def health():
    return jsonify(status="ok")


@endpoint(bp, "/ready", summary="Readiness: 200 once a snapshot is loaded and the server "
          "started, else 503 (same body)", answer=_STATUS, also=(503,))
def ready():
    served = current_app.extensions["shoprecs.holder"].engine
    if served is None or not current_app.extensions.get("shoprecs.started", True):
        return jsonify(status="not ready", version=None), 503
    return jsonify(status="ready", version=served.version)


@endpoint(bp, "/metrics", summary="Prometheus metrics", content_type="text/plain",
          answer={"type": "string"})
def metrics():
    registry = current_app.extensions["shoprecs.metrics"].exposition
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


@endpoint(bp, "/admin/reload", "POST", admin=True, answer=_STATUS, errors=(401, 403, 409),
          summary="Load serving/CURRENT now (needs an admin X-API-Key); 409 and the old "
                  "version keeps serving if the new one is broken")
def admin_reload():
    require_key(request.headers.get(HEADER), current_app.extensions["shoprecs.admin_keys"],
                "admin", "SHOPRECS_ADMIN_API_KEYS")
    result = current_app.extensions["shoprecs.holder"].reload(force=True)
    if result.status == "reloaded":
        notify_siblings()  # other worker processes, if any, follow now
    if result.status == "refused":
        raise ApiError(409, "reload_refused", result.detail)
    return jsonify(status=result.status, version=result.version, detail=result.detail)
