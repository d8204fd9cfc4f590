"""The storefront's routes (docs/serving.md): lookups answered from the engine.

Each route is defined once (service/api.py): its parameters arrive parsed, and its answer
is the engine's data in its shape (service/answers.py).
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from engine import Filter, RecommendationEngine, UnknownProduct
from engine.recommender import Suggestion as Suggested
from service import answers
from service.answers import BASKET, RECOMMENDATIONS, RULES, SIMILAR
from service.api import AssociationsQuery, Basket, RecommendationsQuery, SimilarQuery, endpoint
from service.errors import ApiError
from service.events import arm_of, shopper_key, shown

bp = Blueprint("api", __name__)
LOOKUP_ERRORS = (400, 401, 403, 404, 503)
GOODS = {"goods_id": ("goods id as in the catalog", "10082")}
SHOWN = ("X-Model-Version", "X-Recommendation-Source", "X-Recommendation-Id", "X-Experiment-Arm")


def engine() -> RecommendationEngine:
    """The engine serving now, taken once per request (reloads swap it whole)."""
    found = current_app.extensions["shoprecs.holder"].engine
    if found is None:
        raise ApiError(503, "not_ready", "no model snapshot is loaded yet; publish one "
                       "(shoprecs publish) and the service picks it up")
    return found


def shop_filter(served: RecommendationEngine, exclude=(), categories=None,
                owned: frozenset[str] = frozenset()) -> Filter:
    """The shop's rules in force in this worker (availability, blacklist) and the request's
    own filters; `owned`: the shopper's bought goods, when the request excludes them."""
    rules = current_app.extensions["shoprecs.rules"].current()
    return served.filter(rules, (*(str(g) for g in exclude), *owned), categories)


def owned_by(served: RecommendationEngine, key: str | None, exclude_bought: bool
             ) -> frozenset[str]:
    """What the shopper bought, when the request leaves it out (else nothing)."""
    return served.owned(key) if exclude_bought else frozenset()


def _unknown(goods_id: str) -> ApiError:
    shown = goods_id if len(goods_id) <= 60 else goods_id[:60] + "..."
    return ApiError(404, "unknown_product", f"no product {shown!r} in the served catalog")


@endpoint(bp, "/users/<phone>/recommendations", query=RecommendationsQuery,
          summary="Recommendations for a shopper; popular goods for unknown shoppers",
          path={"phone": ("phone in any format", "+7 (916) 539-6205")},
          answer=RECOMMENDATIONS.schema, headers=SHOWN, errors=LOOKUP_ERRORS)
def user_recommendations(phone: str, query: RecommendationsQuery):
    served = engine()
    key = shopper_key(served, phone, "phone")
    arm = arm_of(key)
    only = shop_filter(served, query.excluded, query.categories)
    if arm is not None and arm.variant == "popular":
        only = shop_filter(served, query.excluded, query.categories,
                           owned_by(served, key, query.exclude_bought))
        recs, sources = served.popular(query.limit, only=only, skip=query.recent_ids)
    else:
        recs, sources = served.recommend(phone, query.limit, query.exclude_bought,
                                         recent=query.recent_ids, only=only)
    return shown("recommendations", served, RECOMMENDATIONS,
                 answers.scored(served, recs, only.price_of), [g for g, _ in recs], sources,
                 key, arm, query.envelope)


@endpoint(bp, "/products/<goods_id>/associations", query=AssociationsQuery, path=GOODS,
          summary="Association rules whose antecedent is exactly this product",
          answer=list[answers.RuleItem], headers=("X-Model-Version",), errors=LOOKUP_ERRORS)
def product_associations(goods_id: str, query: AssociationsQuery):
    served = engine()
    try:
        rules = served.associations(goods_id, query.limit, query.min_confidence, query.sort,
                                    query.collapse_variants,
                                    only=shop_filter(served, query.excluded, query.categories))
    except UnknownProduct:
        raise _unknown(goods_id) from None
    response = Response(RULES.dump_json(answers.rules(served, rules)),
                        mimetype="application/json")
    response.headers["X-Model-Version"] = served.version
    return response


@endpoint(bp, "/products/<goods_id>/similar", query=SimilarQuery, path=GOODS,
          summary="Goods nearest to this one by ALS item factors (by name for goods nobody "
          "bought yet)", answer=SIMILAR.schema, headers=SHOWN, errors=LOOKUP_ERRORS)
def similar_products(goods_id: str, query: SimilarQuery):
    served = engine()
    key = shopper_key(served, query.shopper, "shopper")
    arm = arm_of(key)
    only = shop_filter(served, query.excluded, query.categories,
                       owned_by(served, key, query.exclude_bought))
    try:
        near, sources = served.similar(goods_id, query.limit, only=only)
    except UnknownProduct:
        raise _unknown(goods_id) from None
    if arm is not None and arm.variant == "popular":
        near, sources = served.popular(query.limit, only=only, skip=(goods_id,))
    return shown("similar", served, SIMILAR, answers.scored(served, near, only.price_of, "score"),
                 [g for g, _ in near], sources, key, arm, query.envelope)


@endpoint(bp, "/recommendations/basket", "POST", body=Basket, answer=BASKET.schema,
          summary="What to add to a cart: rules, else similar goods, else popular goods",
          headers=SHOWN, errors=(*LOOKUP_ERRORS, 413))
def basket(body: Basket):
    served = engine()
    key = shopper_key(served, body.shopper, "shopper")
    arm = arm_of(key)
    only = shop_filter(served, body.exclude, body.category,
                       owned_by(served, key, body.exclude_bought))
    cart = [str(i) for i in body.items]
    if arm is not None and arm.variant == "popular":
        top, sources = served.popular(body.limit, only=only, skip=cart)
        found = [Suggested(g, s, ()) for g, s in top]
    else:
        found, sources = served.basket(cart, body.limit, only=only)
    return shown("basket", served, BASKET, answers.suggestions(served, found, only.price_of),
                 [s.goods_id for s in found], sources, key, arm, body.envelope)
