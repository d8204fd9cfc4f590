"""The Flask app factory: configuration, the engine, JSON errors, blueprints.

Configuration: defaults from `shoprecs.config` (file + SHOPRECS_* environment), then the
`config` mapping given to `create_app` (tests pass {"TESTING": True, ...}).
"""
from __future__ import annotations

import logging

from flask import Flask

from engine import RecommendationEngine, SnapshotError
from service import errors, routes
from shoprecs import config as shoprecs_config
from shoprecs.phones import PhoneRules

log = logging.getLogger(__name__)


def init_engine(app: Flask, settings: shoprecs_config.Settings) -> None:
    """Attach the engine serving CURRENT, or None (then /ready answers 503)."""
    engine = app.config.get("ENGINE")
    if engine is None:
        rules = PhoneRules(settings.phone_country_code, settings.phone_trunk_prefix,
                           settings.phone_national_length)
        try:
            engine = RecommendationEngine.from_warehouse(
                settings.warehouse, hmac_key=settings.privacy_hmac_key, rules=rules)
            log.info("serving version %s", engine.version)
        except SnapshotError as exc:
            log.warning("no snapshot loaded: %s", exc)
    app.extensions["shoprecs.engine"] = engine


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(JSON_SORT_KEYS=False, ENGINE=None, SETTINGS=None)
    if config:
        app.config.update(config)
    settings = app.config["SETTINGS"] or shoprecs_config.load()
    app.json.sort_keys = False
    app.json.compact = True
    init_engine(app, settings)
    errors.init_app(app)
    app.register_blueprint(routes.bp)
    return app
