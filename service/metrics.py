"""Prometheus metrics: requests and latency per route, and what snapshot is served.

One CollectorRegistry per app (tests build many apps). Under several worker processes
(service/workers.py sets PROMETHEUS_MULTIPROC_DIR) the values live in files shared by the
workers, and /metrics exposes their sum (`exposition`); the snapshot gauges are the
answering worker's. Route labels are the templates of the routes Flask matched (every
route, none listed here), never raw paths, so phones never become label values and
cardinality stays fixed. Children are cached per (route,
status) so a request costs two dict reads and two observations.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from time import perf_counter

from flask import request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from engine import EngineHolder, ReloadResult
from service.api import template

ROUTE = "shoprecs.route"  # the environ key note_route sets; a path no route matched: "other"
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def note_route() -> None:
    """Flask's first before_request: the matched route's template, for the labels."""
    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE] = template(rule.rule)


class _SnapshotCollector:
    """Scrape-time gauges: served version, its age, when it was loaded."""

    def __init__(self, holder: EngineHolder):
        self._holder = holder

    def collect(self):
        engine = self._holder.engine
        info = GaugeMetricFamily("shoprecs_snapshot_info", "Snapshot version served (1)",
                                 labels=["version"])
        age = GaugeMetricFamily("shoprecs_snapshot_age_seconds",
                                "Seconds since the served snapshot was published")
        loaded = GaugeMetricFamily("shoprecs_snapshot_loaded_timestamp_seconds",
                                   "Unix time the served snapshot was loaded")
        if engine is not None:
            info.add_metric([engine.version], 1)
            published = engine.snapshot.manifest.get("published_at")
            try:
                age.add_metric([], time.time() - dt.datetime.fromisoformat(published).timestamp())
            except (TypeError, ValueError):
                pass
            loaded.add_metric([], self._holder.loaded_at or 0)
        yield from (info, age, loaded)


class Metrics:
    def __init__(self, holder: EngineHolder):
        self.registry = CollectorRegistry()
        self._requests = Counter("shoprecs_http_requests", "HTTP requests by route and status",
                                 ["route", "status"], registry=self.registry)
        self._latency = Histogram("shoprecs_http_request_duration_seconds",
                                  "Time to answer, by route", ["route"], buckets=BUCKETS,
                                  registry=self.registry)
        self._reloads = Counter("shoprecs_snapshot_reloads", "Reload attempts by result",
                                ["result"], registry=self.registry)
        self._events_written = Counter("shoprecs_events_written",
                                       "Impressions and feedback events written, by kind",
                                       ["kind"], registry=self.registry)
        self._events_dropped = Counter("shoprecs_events_dropped",
                                       "Events dropped because the writer fell behind, by kind",
                                       ["kind"], registry=self.registry)
        self._events_refused = Counter("shoprecs_events_refused",
                                       "Feedback events refused by POST /events, by reason",
                                       ["reason"], registry=self.registry)
        self.registry.register(_SnapshotCollector(holder))
        self.exposition = self.registry  # what /metrics shows
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:
            self.exposition = CollectorRegistry()
            MultiProcessCollector(self.exposition, shared)
            self.exposition.register(_SnapshotCollector(holder))
        holder.listeners.append(self.reloaded)
        self._children: dict[tuple[str, str], tuple] = {}

    def observe(self, route: str, status: str, seconds: float) -> None:
        pair = self._children.get((route, status))
        if pair is None:
            pair = self._children[(route, status)] = (
                self._requests.labels(route, status), self._latency.labels(route))
        pair[0].inc()
        pair[1].observe(seconds)

    def events_written(self, kind: str, count: int) -> None:
        self._events_written.labels(kind).inc(count)

    def events_dropped(self, kind: str, count: int) -> None:
        self._events_dropped.labels(kind).inc(count)

    def events_refused(self, reason: str, count: int) -> None:
        self._events_refused.labels(reason).inc(count)

    def reloaded(self, result: ReloadResult) -> None:
        self._reloads.labels(result.status).inc()


# What every answer tells a browser: never sniff the content type, never frame it. (Admin
# answers add no-store, /merch its Content-Security-Policy: service/api.py, service/merch.py.)
BROWSER_HEADERS = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY")]


class MetricsMiddleware:
    """WSGI: every request counted and timed under its route template, and BROWSER_HEADERS
    and `X-Worker` (which worker process answered: service/workers.py) added to every
    answer."""

    def __init__(self, app, metrics: Metrics, worker: str = "0"):
        self.app, self.metrics = app, metrics
        self.headers = [*BROWSER_HEADERS, ("X-Worker", worker)]

    def __call__(self, environ, start_response):
        started = perf_counter()
        status = []

        def capture(line, headers, exc_info=None):
            status.append(line[:3])
            headers.extend(self.headers)
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            self.metrics.observe(environ.get(ROUTE, "other"),
                                 status[0] if status else "500", perf_counter() - started)
