"""The Flask app factory: configuration, the engine holder, metrics, JSON errors, blueprints.

Configuration: defaults from `core.config` (file + SHOPRECS_* environment), then the
`config` mapping given to `create_app` (tests pass {"TESTING": True, ...}); a mapping may
carry ENGINE (a ready RecommendationEngine) to serve instead of the warehouse's CURRENT.

Request path: CherryPy -> TransLogger -> MetricsMiddleware -> Flask.
"""
from __future__ import annotations

import logging

from cachetools import LRUCache
from flask import Flask, redirect

from core import config as shoprecs_config
from core.phones import PhoneRules
from engine import EngineHolder, RulesHolder
from engine.events import EventLog, RecommendationIds
from engine.mongo_engine import engine_for
from engine.stores import blacklist_for, event_sinks, register_for, source_for
from experiments.arms import Experiment
from service import errors, events, merch, ops, routes, shop
from service.accesslog import trusted_networks
from service.auth import access_check, declare, parse_keys
from service.erasure import Erasures
from service.metrics import Metrics, MetricsMiddleware, note_route

log = logging.getLogger(__name__)


def make_holder(settings: shoprecs_config.Settings, engine=None) -> EngineHolder:
    """A holder for the served version, loaded now if one is published: the warehouse's
    serving/CURRENT, or MongoDB's pointer document when service.store is "mongo"."""
    rules = PhoneRules.from_settings(settings.phone)

    def make_engine(snapshot):
        return engine_for(snapshot, hmac_key=settings.privacy.keys, rules=rules)

    holder = EngineHolder(settings.root, make_engine, engine,
                          source=source_for(settings) if engine is None else None)
    if engine is None:
        result = holder.reload()
        if holder.engine is None:
            log.warning("no snapshot loaded (%s): /ready answers 503 until one is published",
                        result.detail or result.status)
        else:
            log.info("serving version %s", holder.version)
    return holder


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(ENGINE=None, SETTINGS=None, WORKER=0)  # which of service.workers
    if config:
        app.config.update(config)
    settings = app.config["SETTINGS"] or shoprecs_config.load()
    app.config["MAX_CONTENT_LENGTH"] = settings.service.max_body_bytes
    app.json.sort_keys = False
    app.json.compact = True
    holder = make_holder(settings, app.config["ENGINE"])
    trusted = trusted_networks(settings.service.trusted_proxies)
    metrics = Metrics(holder)
    storefront_keys = parse_keys(settings.storefront.api_keys)
    rules = RulesHolder(settings.root, settings.service.rules_interval,
                        blacklist_for(settings), register_for(settings))
    event_log = None
    if settings.events.enabled:
        event_log = EventLog(event_sinks(settings), interval=settings.events.interval,
                             max_pending=settings.events.max_pending,
                             on_written=metrics.events_written,
                             on_dropped=metrics.events_dropped,
                             forgotten=lambda: rules.current().forgotten)
    app.extensions.update({
        "shoprecs.events": event_log,
        "shoprecs.recommendation_ids": RecommendationIds.for_key(settings.privacy.hmac_key),
        "shoprecs.event_guard": events.EventGuard(settings, trusted, metrics.events_refused),
        "shoprecs.experiment": Experiment.parse(settings.experiment.name,
                                                settings.experiment.arms),
        "shoprecs.seen_events": LRUCache(events.SEEN_EVENT_IDS),
        "shoprecs.settings": settings, "shoprecs.holder": holder, "shoprecs.metrics": metrics,
        "shoprecs.rules": rules, "shoprecs.erasures": Erasures(settings),
        "shoprecs.trusted": trusted,
        "shoprecs.admin_keys": parse_keys(settings.admin.api_keys),
        "shoprecs.storefront_keys": storefront_keys})
    errors.init_app(app)
    for blueprint in (routes.bp, events.bp, ops.bp, shop.bp, merch.bp):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "index", lambda: redirect("/merch"))
    declare("index", "public")
    app.before_request(note_route)  # first: a refused request is counted under its route
    app.before_request(access_check(app.extensions["shoprecs.admin_keys"], storefront_keys))
    app.wsgi_app = MetricsMiddleware(app.wsgi_app, metrics, str(app.config["WORKER"]))
    return app
