"""Routes for operators: /models, /health, /ready, /metrics, /openapi.json, /admin/reload,
/admin/forget."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from core.errors import WarehouseBusy
from engine import InvalidPhone
from service.api import Shopper, endpoint
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


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"example": {"phone": "+7 (905) 545-5709"}})
    phone: Shopper


@endpoint(bp, "/admin/forget", "POST", admin=True, body=ForgetRequest, answer=_OBJECT,
          also=(202,), errors=(400, 401, 403),
          summary="Erase a shopper on request (needs an admin X-API-Key): answered as unknown "
                  "at once; 200 with what was removed, or 202 when a run holds the warehouse "
                  "and the night finishes the erasure")
def admin_forget(body: ForgetRequest):
    from etl import privacy

    require_key(request.headers.get(HEADER), current_app.extensions["shoprecs.admin_keys"],
                "admin", "SHOPRECS_ADMIN_API_KEYS")
    settings = current_app.extensions["shoprecs.settings"]
    try:
        try:
            done, status = privacy.forget(settings, body.phone, wait=0), 200
        except WarehouseBusy:
            done, status = privacy.defer(settings, body.phone), 202
    except InvalidPhone as exc:
        raise ApiError(400, "invalid_phone", f"phone: {exc}") from None
    current_app.extensions["shoprecs.rules"].refresh(force=True)  # this worker, now
    return jsonify(status="erased" if status == 200 else "pending", key=done["key"],
                   requested_at=done["requested_at"], removed=done.get("removed")), status
