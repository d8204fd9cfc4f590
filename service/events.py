"""Impressions, feedback and the A/B test, as the storefront meets them.

Every storefront answer (recommendations, similar goods, basket) gets a recommendation id
(the X-Recommendation-Id header; in the body too with `envelope=true`) and is recorded as
an impression (engine/events.py) with the shopper's key, the arm and what was shown. A
request that names a shopper is in the running experiment's arm for them
(engine/experiments.py: the X-Experiment-Arm header), which decides what it is shown.

    POST /events       clicks and add-to-carts on recommended goods, by recommendation id
    GET  /experiments  the running experiment and the nightly attribution's reports
"""
from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from cachetools import LRUCache
from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints

from engine import InvalidPhone, RecommendationEngine
from engine.events import attribution_reports
from engine.experiments import Arm, Experiment
from service.api import Shopper, endpoint
from service.errors import ApiError

bp = Blueprint("events", __name__)
MAX_EVENTS = 100
SEEN_EVENT_IDS = 100_000  # per worker: a retried POST is answered as a duplicate
REC_ID = r"^[0-9a-f]{12}-[0-9a-f]{1,16}$"


def _ext(name: str):
    return current_app.extensions[f"shoprecs.{name}"]


def shopper_key(served: RecommendationEngine, phone: str | None, field: str) -> str | None:
    """The shopper's key for `phone` (None stays None); a bad phone is the JSON 400."""
    if phone is None:
        return None
    try:
        return served.user_key(phone)
    except InvalidPhone as exc:
        raise ApiError(400, f"invalid_{field}", str(exc)) from None


def arm_of(key: str | None) -> Arm | None:
    """The shopper's arm of the running experiment (None: no experiment, or no shopper)."""
    experiment: Experiment | None = _ext("experiment")
    if experiment is None or key is None:
        return None
    return experiment.assign(key)


def shown(route: str, served: RecommendationEngine, body: bytes, goods: list[str],
          sources: tuple[str, ...], key: str | None, arm: Arm | None,
          envelope: bool) -> Response:
    """The answer as JSON with its ids in the headers, recorded as an impression."""
    rec_id = _ext("recommendation_ids")()
    events = _ext("events")
    if events is not None:
        events.record("impressions", {
            "id": rec_id, "time": time.time(), "shopper": key, "route": route,
            "version": served.version, "experiment": arm and _ext("experiment").name,
            "arm": arm and arm.name, "variant": arm.variant if arm else "model",
            "sources": sources, "goods": goods})
    if envelope:
        body = b'{"recommendationId":"%s","items":%s}' % (rec_id.encode(), body)
    response = Response(body, mimetype="application/json")
    headers = response.headers
    headers["X-Model-Version"] = served.version
    headers["X-Recommendation-Source"] = ",".join(sources)
    headers["X-Recommendation-Id"] = rec_id
    if arm is not None:
        headers["X-Experiment-Arm"] = arm.name
    return response


EventId = Annotated[str, StringConstraints(min_length=1, max_length=100,
                                           pattern=r"^[A-Za-z0-9_.:-]+$")]


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    eventId: EventId = Field(description="the storefront's own id of this event: sent twice, "
                             "counted once")
    type: Literal["click", "add_to_cart"]
    recommendationId: Annotated[str, StringConstraints(pattern=REC_ID)] = Field(
        description="X-Recommendation-Id of the answer that showed the goods")
    goodsId: StrictInt | Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    phone: Shopper | None = None


class Events(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"example": {
        "events": [{"eventId": "e-1", "type": "click", "recommendationId": "3f9a0c1d2e4b-1a",
                    "goodsId": 10082}]}})
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


@endpoint(bp, "/events", "POST", body=Events, errors=(400, 401, 403, 413, 503), ok=202,
          summary="Clicks and add-to-carts on recommended goods (purchases need no call: the "
                  "next nights' orders are the conversions)",
          answer={"type": "object", "required": ["accepted", "duplicates"]})
def post_events(body: Events):
    events = _ext("events")
    if events is None:
        raise ApiError(503, "events_disabled", "events are not recorded here "
                       "(events.enabled is false)")
    served = current_app.extensions["shoprecs.holder"].engine
    seen: LRUCache = _ext("seen_events")
    now, accepted, duplicates = time.time(), 0, 0
    for event in body.events:
        key = None
        if event.phone is not None:
            if served is None:
                raise ApiError(503, "not_ready", "no snapshot loaded: cannot key the phone")
            key = shopper_key(served, event.phone, "phone")
        if seen.get(event.eventId):
            duplicates += 1
            continue
        seen[event.eventId] = True
        events.record("feedback", {"id": event.eventId, "time": now, "type": event.type,
                                   "recommendation": event.recommendationId,
                                   "goods": str(event.goodsId), "shopper": key})
        accepted += 1
    return jsonify(accepted=accepted, duplicates=duplicates), 202


@endpoint(bp, "/experiments", summary="The running A/B test and the nightly attribution: "
          "per arm and route, clicks, purchases and revenue with confidence intervals",
          answer={"type": "object", "required": ["experiment", "reports"]})
def experiments():
    experiment: Experiment | None = _ext("experiment")
    running = None if experiment is None else {
        "name": experiment.name,
        "arms": [{"name": a.name, "variant": a.variant, "share": a.share}
                 for a in experiment.arms]}
    reports = attribution_reports(_ext("settings").warehouse, 60)
    return Response(json.dumps({"experiment": running, "reports": reports},
                               separators=(",", ":"), allow_nan=False),
                    mimetype="application/json")
