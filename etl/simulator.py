"""A simulator of the shop's order bus (DESIGN.md, "The order bus"), as a Flask app.

    GET /orders?page=P&per-page=N&expand=basket[&from=YYYY-MM-DD&to=YYYY-MM-DD]
    GET /goods?page=P&per-page=N

Basic auth; pages numbered from 1 to pageCount. It serves generated orders
(`etl.generator`) or a file in the UCI Online Retail format (`etl.retail`).

Run with: shoprecs simulator --generate --port 8765   (or --retail FILE.csv.gz)
"""
from __future__ import annotations

import bisect
import hmac
import math

from flask import Flask, abort, jsonify, request

MAX_PER_PAGE = 1000


def _page_args() -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per-page", 100))
    except ValueError:
        abort(400, "page and per-page must be integers")
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, f"page must be >= 1 and per-page in 1..{MAX_PER_PAGE}")
    return page, per_page


def _paginate(items: list, page: int, per_page: int) -> tuple[list, int]:
    count = max(1, math.ceil(len(items) / per_page))
    return items[(page - 1) * per_page: page * per_page], count


def create_app(orders: list[dict], goods: list[dict], *, user: str = "shoprecs",
               password: str = "shoprecs") -> Flask:
    """The bus over `orders` (any order; served sorted by date) and `goods`."""
    app = Flask("shoprecs-bus-simulator")
    by_date = sorted(orders, key=lambda o: o["date"])
    days = [o["date"][:10] for o in by_date]

    @app.before_request
    def _authenticate():
        auth = request.authorization
        ok = (auth is not None and auth.type == "basic"
              and hmac.compare_digest(auth.username or "", user)
              and hmac.compare_digest(auth.password or "", password))
        if not ok:
            return jsonify(error="authentication required"), 401, {
                "WWW-Authenticate": 'Basic realm="order bus"'}

    @app.errorhandler(400)
    def _bad_request(err):
        return jsonify(error=err.description), 400

    @app.get("/orders")
    def list_orders():
        page, per_page = _page_args()
        lo = bisect.bisect_left(days, request.args.get("from", ""))
        hi = bisect.bisect_right(days, request.args.get("to", "9999-12-31"))
        chunk, count = _paginate(by_date[lo:hi], page, per_page)
        if "basket" not in request.args.get("expand", "").split(","):
            chunk = [{k: v for k, v in o.items() if k != "basket"} for o in chunk]
        return jsonify(orders=chunk, page=page, pageCount=count)

    @app.get("/goods")
    def list_goods():
        page, per_page = _page_args()
        chunk, count = _paginate(goods, page, per_page)
        return jsonify(goods=chunk, page=page, pageCount=count)

    return app


def serve(app: Flask, host: str, port: int, threads: int = 8) -> None:
    """Serve `app` with CherryPy's WSGI server (cheroot) until interrupted."""
    from cheroot.wsgi import Server

    server = Server((host, port), app, numthreads=threads)
    try:
        server.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
