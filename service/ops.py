"""Routes for operators: /models, /health, /ready, /metrics, /openapi.json, /admin/reload,
/admin/forget."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from engine import InvalidPhone
from service.api import Shopper, endpoint
from service.auth import declare
from service.errors import ApiError
from service.openapi import document
from service.routes import engine
from service.workers import notify_siblings

bp = Blueprint("ops", __name__)
_JOB = {"type": "object", "required": ["job", "shopper", "state", "requested_at"],
        "properties": {
    "job": {"type": "string"}, "shopper": {"type": "string"}, "state": {"enum": [
        "queued", "waiting", "running", "done", "deferred", "failed"]},
    "detail": {"type": "string"}, "requested_at": {"type": "string"},
    "removed": {"type": "object"}}}
_STATUS = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string"}, "version": {"type": ["string", "null"]}}}


@endpoint(bp, "/models", summary="The version served, when and on what data it was trained, "
          "its metrics and what the holdout chose", answer={
              "type": "object", "required": ["version"]}, errors=(503,))
def models():
    return jsonify(engine().info())


@endpoint(bp, "/health", access="public", answer={"type": "object"},
          summary="Liveness: 200 while the process lives")
def health():
    return jsonify(status="ok")


@endpoint(bp, "/ready", access="public", answer=_STATUS, also=(503,),
          summary="Readiness: 200 once a snapshot is loaded and the server started, else 503 "
          "(same body)")
def ready():
    served = current_app.extensions["shoprecs.holder"].engine
    if served is None or not current_app.extensions.get("shoprecs.started", True):
        return jsonify(status="not ready", version=None), 503
    return jsonify(status="ready", version=served.version)


@endpoint(bp, "/metrics", access="public", summary="Prometheus metrics", content_type="text/plain",
          answer={"type": "string"})
def metrics():
    registry = current_app.extensions["shoprecs.metrics"].exposition
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


declare("ops.openapi", "public")


@endpoint(bp, "/admin/reload", "POST", access="admin", answer=_STATUS, errors=(401, 403, 409),
          summary="Load serving/CURRENT now (needs an admin X-API-Key); 409 and the old "
                  "version keeps serving if the new one is broken")
def admin_reload():
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


@endpoint(bp, "/admin/forget", "POST", access="admin", body=ForgetRequest, answer=_JOB,
          ok=202, errors=(400, 401, 403, 415),
          summary="Erase a shopper on request (needs an admin X-API-Key): answered as unknown "
                  "at once; the erasure runs as a job, one at a time (follow it at "
                  "/admin/forget/{job})")
def admin_forget(body: ForgetRequest):
    try:
        job = current_app.extensions["shoprecs.erasures"].submit(body.phone)
    except InvalidPhone as exc:
        raise ApiError(400, "invalid_phone", f"phone: {exc}") from None
    current_app.extensions["shoprecs.rules"].refresh(force=True)  # this worker, now
    return jsonify(**job, follow=f"/admin/forget/{job['job']}"), 202


@endpoint(bp, "/admin/forget/<job>", access="admin", answer=_JOB, errors=(401, 403, 404),
          path={"job": ("the job id POST /admin/forget answered", "3f9a0c1d2e4b5a69")},
          summary="An erasure job: queued, waiting (and for whom), running, done (with what "
                  "was removed), deferred to the night, or failed")
def admin_forget_job(job: str):
    found = current_app.extensions["shoprecs.erasures"].state(job)
    if found is None:
        raise ApiError(404, "unknown_job", f"no erasure job {job[:40]!r}")
    return jsonify(found)
