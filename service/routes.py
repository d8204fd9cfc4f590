"""The serving API's routes (DESIGN.md, "Serving API")."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from engine import InvalidPhone, RecommendationEngine, UnknownProduct
from engine.recommender import SORT_KEYS
from service.errors import ApiError

bp = Blueprint("api", __name__)
MAX_LIMIT = 100
FLAGS = {"true": True, "1": True, "false": False, "0": False}


def _engine() -> RecommendationEngine:
    engine = current_app.extensions.get("shoprecs.engine")
    if engine is None:
        raise ApiError(503, "not_ready", "no model snapshot is loaded yet")
    return engine


def _arg(name: str, kind: type, default, lo=None, hi=None):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a {kind.__name__}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, f"invalid_{name}", f"{name} must be between {lo} and {hi}")
    return value


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in FLAGS:
        raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
    return FLAGS[raw]


@bp.get("/users/<phone>/recommendations")
def user_recommendations(phone: str):
    engine = _engine()
    limit = _arg("limit", int, 10, 1, MAX_LIMIT)
    exclude_bought = _flag("exclude_bought")
    try:
        items, personalized = engine.recommend(phone, limit, exclude_bought)
    except InvalidPhone as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None
    response = jsonify(items)
    response.headers["X-Model-Version"] = engine.version
    response.headers["X-Recommendation-Source"] = "personalized" if personalized else "popular"
    return response


@bp.get("/products/<goods_id>/associations")
def product_associations(goods_id: str):
    engine = _engine()
    limit = _arg("limit", int, 10, 1, MAX_LIMIT)
    min_confidence = _arg("min_confidence", float, 0.0, 0.0, 1.0)
    sort = request.args.get("sort", "confidence")
    if sort not in SORT_KEYS:
        raise ApiError(400, "invalid_sort", f"sort must be one of {', '.join(SORT_KEYS)}")
    try:
        rules = engine.associations(goods_id, limit, min_confidence, sort)
    except UnknownProduct:
        raise ApiError(404, "unknown_product", f"no product {goods_id!r} in the catalog") from None
    response = jsonify(rules)
    response.headers["X-Model-Version"] = engine.version
    return response


@bp.get("/products/<goods_id>/similar")
def similar_products(goods_id: str):
    engine = _engine()
    limit = _arg("limit", int, 10, 1, MAX_LIMIT)
    try:
        items = engine.similar(goods_id, limit)
    except UnknownProduct:
        raise ApiError(404, "unknown_product", f"no product {goods_id!r} in the catalog") from None
    response = jsonify(items)
    response.headers["X-Model-Version"] = engine.version
    return response


@bp.get("/models")
def models():
    return jsonify(_engine().info())


@bp.get("/health")
def health():
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    engine = current_app.extensions.get("shoprecs.engine")
    if engine is None or not current_app.extensions.get("shoprecs.started", True):
        return jsonify(status="not ready", version=None), 503
    return jsonify(status="ready", version=engine.version)
