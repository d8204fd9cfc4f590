"""The merchandisers' page (server-rendered): products, their rules and neighbours,
a shopper's recommendations, and the model being served.

    GET /merch                 the served model's version and metrics, and two forms
    GET /merch?q=<id or name>  a product's associations (confidence, lift, support) and
                               similar goods; several matches -> a list to pick from
    GET /merch?phone=<phone>   what the storefront shows that shopper

and, when the nightly attribution has run, the A/B test: each arm's conversion and revenue
with their intervals, the differences against the control arm, and a chart of each arm's
daily share of impressions that sold.
"""
from __future__ import annotations

import secrets

from flask import Blueprint, current_app, g, render_template, request

from engine import InvalidPhone
from engine.events import attribution_reports
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


COLOURS = ("#3b6ea8", "#e08a2c", "#3a9a4a", "#b03a8a", "#7a5ab8", "#888888")


def _chart(daily: list[dict], experiment: str, width: int = 640, height: int = 200) -> dict:
    """One line per arm: the share of impressions followed by a purchase of a shown goods,
    by day, as SVG polylines (server-side: the page needs no chart library)."""
    by_arm: dict[str, dict[str, list[int]]] = {}
    for row in daily:
        if row.get("experiment") == experiment:
            counts = by_arm.setdefault(row["arm"], {}).setdefault(row["day"], [0, 0])
            counts[0] += row["bought"] or 0
            counts[1] += row["impressions"] or 0
    days = sorted({d for arm in by_arm.values() for d in arm})
    rates = {arm: {d: b / n for d, (b, n) in found.items() if n} for arm, found in by_arm.items()}
    top = max([r for arm in rates.values() for r in arm.values()] + [0.01])
    x = {d: 40 + (width - 60) * (i / max(1, len(days) - 1)) for i, d in enumerate(days)}

    def y(rate: float) -> float:
        return round(height - 25 - (height - 45) * rate / top, 1)

    lines = [{"arm": arm, "colour": COLOURS[i % len(COLOURS)],
              "points": " ".join(f"{x[d]:.1f},{y(r)}" for d, r in sorted(found.items()))}
             for i, (arm, found) in enumerate(sorted(rates.items()))]
    return {"width": width, "height": height, "lines": lines, "top": top, "days": days,
            "y_top": y(top), "y_zero": y(0)}


def _experiments() -> dict | None:
    """The latest attribution report and its chart (experiments/attribution.py)."""
    reports = attribution_reports(current_app.extensions["shoprecs.settings"].root, 1)
    if not reports:
        return None
    latest = reports[-1]
    return {"report": latest, "charts": {e["name"]: _chart(latest.get("daily", []), e["name"])
                                         for e in latest.get("experiments", [])}}


@bp.get("/merch")
def page():
    g.csp_nonce = secrets.token_urlsafe(16)  # the page's own <script> and <style> only
    engine = current_app.extensions["shoprecs.holder"].engine
    query = request.args.get("q", "").strip()[:200]
    phone = request.args.get("phone", "").strip()[:40]
    view = {"engine": engine, "query": query, "phone": phone, "experiments": _experiments(),
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
    nonce = g.csp_nonce
    return render_template("merch.html", **view), 200 if engine is not None else 503, {
        # only the page's own <script> and <style> run; it may show a shopper's list
        "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "Cache-Control": "no-store"}
