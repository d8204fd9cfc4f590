"""Impressions, feedback and the A/B test, as the storefront meets them.

Every storefront answer (recommendations, similar goods, basket) gets a recommendation id
(the X-Recommendation-Id header; in the body too with `envelope=true`) and is recorded as
an impression (engine/events.py) with the shopper's key, the arm and what was shown. A
request that names a shopper is in the running experiment's arm for them
(experiments/arms.py: the X-Experiment-Arm header), which decides what it is shown.

    POST /events       clicks and add-to-carts on recommended goods, by recommendation id
    GET  /experiments  the running experiment and the nightly attribution's reports
"""
from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from typing import Annotated, Literal

from cachetools import LRUCache
from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints

from core.errors import ConfigError
from engine import InvalidPhone, RecommendationEngine
from engine.events import RecommendationIds, attribution_reports, bytes_written
from experiments.arms import Arm, Experiment
from service.accesslog import client_address
from service.answers import Answer
from service.api import Shopper, endpoint
from service.auth import HEADER
from service.errors import ApiError

bp = Blueprint("events", __name__)
MAX_EVENTS = 100
SEEN_EVENT_IDS = 100_000  # per worker: a retried POST is answered as a duplicate
REC_ID = RecommendationIds.PATTERN


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


def shown(route: str, served: RecommendationEngine, answer: Answer, items: list,
          goods: list[str], sources: tuple[str, ...], key: str | None, arm: Arm | None,
          envelope: bool) -> Response:
    """`items` as `answer`'s JSON with its ids in the headers, recorded as an impression."""
    rec_id = _ext("recommendation_ids")()
    events = _ext("events")
    if events is not None:
        experiment = _ext("experiment") if arm else None
        # The experiment's control is recorded with each impression, so attributing a past
        # day later reproduces its report whatever the configuration is by then.
        events.record("impressions", {
            "id": rec_id, "time": time.time(), "shopper": key, "route": route,
            "version": served.version, "experiment": experiment and experiment.name,
            "arm": arm and arm.name, "control": experiment and experiment.control.name,
            "variant": arm.variant if arm else "model", "sources": sources, "goods": goods})
    response = Response(answer.json(items, rec_id if envelope else None),
                        mimetype="application/json")
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
        "events": [{"eventId": "e-1", "type": "click",
                    "recommendationId": "3f9a0c1d2e4b-1a.5d0c8e2b9a7f6e31",
                    "goodsId": 10082}]}})
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


@endpoint(bp, "/events", "POST", body=Events, errors=(400, 401, 403, 413, 415, 429, 503),
          ok=202, summary="Clicks and add-to-carts on recommended goods (purchases need no "
          "call: the next nights' orders are the conversions)",
          answer={"type": "object", "required": ["accepted", "duplicates"]})
def post_events(body: Events):
    events = _ext("events")
    if events is None:
        raise ApiError(503, "events_disabled", "events are not recorded here "
                       "(events.enabled is false)")
    ids = _ext("recommendation_ids")
    for n, event in enumerate(body.events):
        if not ids.issued(event.recommendationId):
            _ext("metrics").events_refused("unknown_recommendation", len(body.events))
            raise ApiError(400, "unknown_recommendation", f"events.{n}.recommendationId: "
                           f"{event.recommendationId!r} is no answer's id from this service "
                           "(X-Recommendation-Id)")
    _ext("event_guard").admit(request, len(body.events))
    served = _ext("holder").engine
    if served is None and any(event.phone is not None for event in body.events):
        raise ApiError(503, "not_ready", "no snapshot loaded: cannot key the phone")
    keys = [shopper_key(served, event.phone, "phone") for event in body.events]
    seen: LRUCache = _ext("seen_events")
    now, accepted, duplicates = time.time(), 0, 0
    for event, key in zip(body.events, keys, strict=True):
        if seen.get(event.eventId):
            duplicates += 1
            continue
        if not events.record("feedback", {"id": event.eventId, "time": now,
                                          "type": event.type,
                                          "recommendation": event.recommendationId,
                                          "goods": str(event.goodsId), "shopper": key}):
            raise ApiError(503, "events_backlog", f"{accepted} events accepted, the rest not: "
                           "the writer is behind; send them again", {"Retry-After": "1"})
        seen[event.eventId] = True
        accepted += 1
    return jsonify(accepted=accepted, duplicates=duplicates), 202


class EventGuard:
    """What keeps POST /events from filling the disk: a per-client rate limit on events
    (events.rate_limit, in this worker process) and a cap on the feedback bytes written per
    UTC day (events.max_feedback_mb_per_day, across the workers sharing the warehouse: the
    day's files are measured at most once a second). Past either: 429 with Retry-After."""

    def __init__(self, settings, trusted: tuple, refused):
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        try:
            self.limit = parse(settings.events.rate_limit) if settings.events.rate_limit \
                else None
        except ValueError:
            raise ConfigError(f"events.rate_limit {settings.events.rate_limit!r}: write it "
                              'as "300/second" or "10000/minute"') from None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.cap = int(settings.events.max_feedback_mb_per_day * 2**20)
        self.root, self.trusted, self.refused = settings.root, trusted, refused
        self._measured: tuple[str, float, int] = ("", 0.0, 0)  # day, when, bytes
        self._lock = threading.Lock()

    def admit(self, req, count: int) -> None:
        client = req.headers.get(HEADER) or client_address(req.environ, self.trusted)
        if self.limit is not None and not self.limiter.hit(self.limit, client, cost=count):
            reset = self.limiter.get_window_stats(self.limit, client).reset_time
            self.refused("rate_limited", count)
            raise ApiError(429, "rate_limited", f"more than {self.limit} events from this "
                           "client (events.rate_limit)",
                           {"Retry-After": str(max(1, math.ceil(reset - time.time())))})
        if self.cap and self._used(req.content_length or 0) > self.cap:
            self.refused("daily_cap", count)  # Retry-After: till midnight UTC (POSIX days)
            raise ApiError(429, "daily_cap", "today's feedback has reached "
                           "events.max_feedback_mb_per_day; it is taken again tomorrow (UTC)",
                           {"Retry-After": str(int(86400 - time.time() % 86400) + 1)})

    def _used(self, adding: int) -> int:
        """The day's feedback bytes on disk (measured at most once a second) and what this
        worker took since, `adding` included."""
        with self._lock:
            day, when, used = self._measured
            today, now = dt.datetime.now(dt.UTC).date().isoformat(), time.monotonic()
            if day != today or now - when > 1.0:
                used, when = bytes_written(self.root, "feedback", today), now
            self._measured = (today, when, used + adding)
            return used + adding


@endpoint(bp, "/experiments", summary="The running A/B test and the nightly attribution: "
          "per arm and route, clicks, purchases and revenue with confidence intervals",
          answer={"type": "object", "required": ["experiment", "reports"]})
def experiments():
    experiment: Experiment | None = _ext("experiment")
    running = None if experiment is None else {
        "name": experiment.name,
        "arms": [{"name": a.name, "variant": a.variant, "share": a.share}
                 for a in experiment.arms]}
    reports = attribution_reports(_ext("settings").root, 60)
    return Response(json.dumps({"experiment": running, "reports": reports},
                               separators=(",", ":"), allow_nan=False),
                    mimetype="application/json")
