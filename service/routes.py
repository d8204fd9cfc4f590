"""The storefront's routes (DESIGN.md, "Serving API"): lookups answered from the engine.

Every response body here is JSON the engine encoded; `service/fastpath.py` answers the
same GET requests before they reach Flask when it can, with identical results.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from engine import InvalidPhone, RecommendationEngine, UnknownProduct
from service import params
from service.auth import HEADER, require_key
from service.errors import ApiError

bp = Blueprint("api", __name__)


def engine() -> RecommendationEngine:
    """The engine serving now, taken once per request (reloads swap it whole)."""
    found = current_app.extensions["shoprecs.holder"].engine
    if found is None:
        raise ApiError(503, "not_ready", "no model snapshot is loaded yet; publish one "
                       "(shoprecs publish) and the service picks it up")
    return found


@bp.before_request
def _storefront_key():
    keys = current_app.extensions["shoprecs.storefront_keys"]
    if keys:
        require_key(request.headers.get(HEADER), keys, "storefront",
                    "SHOPRECS_STOREFRONT_API_KEYS")


def _json(body: bytes, version: str, **headers) -> Response:
    response = Response(body, mimetype="application/json")
    response.headers["X-Model-Version"] = version
    response.headers.update(headers)
    return response


def _unknown(goods_id: str) -> ApiError:
    shown = goods_id if len(goods_id) <= 60 else goods_id[:60] + "..."
    return ApiError(404, "unknown_product", f"no product {shown!r} in the served catalog")


@bp.get("/users/<phone>/recommendations")
def user_recommendations(phone: str):
    served = engine()
    limit = params.limit(request.args.get("limit"))
    exclude_bought = params.flag("exclude_bought", request.args.get("exclude_bought"))
    try:
        body, personalized = served.recommend_json(phone, limit, exclude_bought)
    except InvalidPhone as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None
    source = "personalized" if personalized else "popular"
    return _json(body, served.version, **{"X-Recommendation-Source": source})


@bp.get("/products/<goods_id>/associations")
def product_associations(goods_id: str):
    served = engine()
    limit = params.limit(request.args.get("limit"))
    min_confidence = params.min_confidence(request.args.get("min_confidence"))
    sort = params.sort(request.args.get("sort"))
    try:
        body = served.associations_json(goods_id, limit, min_confidence, sort)
    except UnknownProduct:
        raise _unknown(goods_id) from None
    return _json(body, served.version)


@bp.get("/products/<goods_id>/similar")
def similar_products(goods_id: str):
    served = engine()
    limit = params.limit(request.args.get("limit"))
    try:
        body = served.similar_json(goods_id, limit)
    except UnknownProduct:
        raise _unknown(goods_id) from None
    return _json(body, served.version)


@bp.post("/recommendations/basket")
def basket():
    served = engine()
    items, limit = params.basket(request.get_json(force=True, silent=True))
    body, source = served.basket_json(items, limit)
    return _json(body, served.version, **{"X-Recommendation-Source": source})
