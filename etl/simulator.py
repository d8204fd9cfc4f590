"""A simulator of the shop's order bus (DESIGN.md, "The order bus"), as a Flask app.

    GET /orders?page=P&per-page=N&expand=basket[&from=YYYY-MM-DD&to=YYYY-MM-DD]
    GET /goods?page=P&per-page=N
    POST /orders   one new order (the shop's checkout): listed from then on, in its day

Basic auth; pages numbered from 1 to pageCount. It serves generated orders
(`etl.generator`) or a file in the UCI Online Retail format (`etl.retail`), and can
misbehave like a real bus (`HttpFaults`): slow pages, 5xx, 429 with Retry-After, dropped
connections, truncated JSON. Data faults (duplicates, re-sends, bad lines) are injected
into the order list by `etl.faults`. Orders are serialized once at start, so the
simulator is not what a benchmark of the extractor measures.

Run with: shoprecs simulator --generate --port 8765   (or --retail FILE.csv.gz)
"""
from __future__ import annotations

import bisect
import hmac
import json
import math
import random
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, abort, jsonify, request

MAX_PER_PAGE = 1000


@dataclass(frozen=True)
class HttpFaults:
    """How often (share of page requests) the bus misbehaves, and how slow it is."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # 503
    throttle_rate: float = 0.0  # 429 with Retry-After
    retry_after_s: int = 1
    drop_rate: float = 0.0  # connection closed half-way through the body
    truncate_rate: float = 0.0  # a complete response whose JSON is cut short
    seed: int = 0


def _page_args() -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per-page", 100))
    except ValueError:
        abort(400, "page and per-page must be integers")
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, f"page must be >= 1 and per-page in 1..{MAX_PER_PAGE}")
    return page, per_page


def _page(items: list[str], key: str, page: int, per_page: int) -> str:
    count = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    return f'{{"{key}":[{",".join(chunk)}],"page":{page},"pageCount":{count}}}'


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class _Misbehaviour:
    """Draws, per request, which HTTP fault (if any) to show."""

    def __init__(self, faults: HttpFaults):
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        f = self.faults
        with self._lock:
            x = self._rng.random()
        for name, rate in (("error", f.error_rate), ("throttle", f.throttle_rate),
                           ("drop", f.drop_rate), ("truncate", f.truncate_rate)):
            if x < rate:
                return name
            x -= rate
        return None

    def respond(self, body: str) -> Response:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        fault = self.draw()
        if fault == "error":
            return Response('{"error":"service unavailable"}', 503, mimetype="application/json")
        if fault == "throttle":
            return Response('{"error":"slow down"}', 429, mimetype="application/json",
                            headers={"Retry-After": str(self.faults.retry_after_s)})
        data = body.encode()
        if fault == "truncate":
            return Response(data[: len(data) // 2], 200, mimetype="application/json")
        if fault == "drop":
            def cut():
                yield data[: len(data) // 2]
                raise ConnectionAbortedError("simulated dropped connection")

            return Response(cut(), 200, mimetype="application/json",
                            headers={"Content-Length": str(len(data))})
        return Response(data, 200, mimetype="application/json")


def create_app(orders: list[dict], goods: list[dict], *, user: str = "shoprecs",
               password: str = "shoprecs", faults: HttpFaults = HttpFaults()) -> Flask:
    """The bus over `orders` (served sorted by date, stable) and `goods`."""
    app = Flask("shoprecs-bus-simulator")
    by_date = sorted(orders, key=lambda o: str(o["date"]))
    days = [str(o["date"])[:10] for o in by_date]
    full = [_dumps(o) for o in by_date]
    short = [_dumps({k: v for k, v in o.items() if k != "basket"}) for o in by_date]
    goods_json = [_dumps(g) for g in goods]
    bus = _Misbehaviour(faults)
    listing = threading.Lock()  # POST /orders inserts while pages are read

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
        source = full if "basket" in request.args.get("expand", "").split(",") else short
        with listing:
            lo = bisect.bisect_left(days, request.args.get("from", ""))
            hi = bisect.bisect_right(days, request.args.get("to", "9999-12-31"))
            chosen = source[lo:hi]
        return bus.respond(_page(chosen, "orders", page, per_page))

    @app.post("/orders")
    def add_order():
        order = request.get_json(silent=True)
        if not (isinstance(order, dict) and order.get("id") is not None
                and isinstance(order.get("date"), str) and len(order["date"]) >= 10
                and isinstance(order.get("basket"), list) and order["basket"]):
            abort(400, "an order is {id, date (ISO 8601), clientTel, basket: [...]}")
        day = order["date"][:10]
        with listing:
            at = bisect.bisect_right(days, day)
            days.insert(at, day)
            full.insert(at, _dumps(order))
            short.insert(at, _dumps({k: v for k, v in order.items() if k != "basket"}))
        return jsonify(id=order["id"]), 201

    @app.get("/goods")
    def list_goods():
        page, per_page = _page_args()
        return bus.respond(_page(goods_json, "goods", page, per_page))

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
