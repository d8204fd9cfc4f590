"""The merchandisers' page (server-rendered): products, their rules and neighbours,
a shopper's recommendations, and the model being served.

    GET /merch                 the served model's version and metrics, and two forms
    GET /merch?q=<id or name>  a product's associations (confidence, lift, support) and
                               similar goods; several matches -> a list to pick from
    GET /merch?phone=<phone>   what the storefront shows that shopper
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from engine import InvalidPhone
from service.routes import shop_filter

bp = Blueprint("merch", __name__, template_folder="templates")


def _numbers(tree, prefix: str = "", out=None, limit: int = 60) -> list[tuple[str, object]]:
    """Flatten the numeric leaves of metrics.json into (dotted name, value) rows."""
    out = [] if out is None else out
    if isinstance(tree, dict):
        for key, value in tree.items():
            _numbers(value, f"{prefix}{key}.", out, limit)
    elif isinstance(tree, int | float) and not isinstance(tree, bool) and len(out) < limit:
        out.append((prefix.rstrip("."), round(tree, 4) if isinstance(tree, float) else tree))
    return out


def _requests_served() -> list[tuple[str, str, float]]:
    registry = current_app.extensions["shoprecs.metrics"].exposition
    rows = []
    for family in registry.collect():
        if family.name == "shoprecs_http_requests":
            rows += [(s.labels["route"], s.labels["status"], s.value) for s in family.samples
                     if s.name.endswith("_total")]
    return sorted(rows)


def _product_view(engine, query: str) -> dict:
    matches = engine.find_products(query)
    if len(matches) != 1:
        return {"matches": matches}
    goods_id, name = matches[0]
    return {"product": {"id": goods_id, "name": name},
            "rules": engine.associations(goods_id, limit=20),
            "similar": engine.similar(goods_id, limit=10)[0]}


@bp.get("/merch")
def page():
    engine = current_app.extensions["shoprecs.holder"].engine
    query = request.args.get("q", "").strip()[:200]
    phone = request.args.get("phone", "").strip()[:40]
    view = {"engine": engine, "query": query, "phone": phone,
            "served": _requests_served(), "name": engine.name if engine else None}
    if engine is not None:
        view["info"] = engine.info()
        view["model_metrics"] = _numbers(engine.info()["metrics"])
        if query:
            view.update(_product_view(engine, query))
        if phone:
            try:
                only = shop_filter(engine)
                view["recs"], sources = engine.recommend(phone, limit=10, only=only)
                view["source"] = ", ".join(sources) if "personalized" in sources else \
                    "popular (unknown shopper)"
            except InvalidPhone as exc:
                view["phone_error"] = str(exc)
    return render_template("merch.html", **view), 200 if engine is not None else 503
