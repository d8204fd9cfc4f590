"""A simulator of the shop's order bus (docs/bus.md, "The contract"), as a Flask app.

    GET /orders?page=P&per-page=N&expand=basket[&from=YYYY-MM-DD&to=YYYY-MM-DD]
    GET /goods?page=P&per-page=N
    POST /orders   one new order (the shop's checkout): listed from then on, in its day

Any bus profile (core/bus_profile.py): other parameter, key and field names, another date
format or time zone, a lower-bound date filter or none (then sorted by date, newest first,
or not at all). Orders listed late (`simulation.faults`, `late`) appear only once the `clock`
reaches their listing time; `/goods` can be down (`goods_error_rate`).

Basic auth; pages numbered from 1 to pageCount. It serves generated orders
(`simulation.generator`) or a file in the UCI Online Retail format (`simulation.retail`), and can
misbehave like a real bus (`HttpFaults`): slow pages, 5xx, 429 with Retry-After, dropped
connections, truncated JSON. Data faults (duplicates, re-sends, bad lines) are injected
into the order list by `simulation.faults`. Orders are serialized once at start, so the
simulator is not what a benchmark of the extractor measures.

Run with: shoprecs simulator --port 8765   (or --retail FILE.csv.gz)
"""
from __future__ import annotations

import bisect
import datetime as dt
import hmac
import json
import math
import random
import threading
import time
import zlib
from dataclasses import dataclass

from flask import Flask, Response, abort, jsonify, request

from core.bus_profile import BusProfile

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
    goods_error_rate: float = 0.0  # /goods answers 503 (a catalog service that is down)
    seed: int = 0


def _page_args(profile: BusProfile) -> tuple[int, int]:
    try:
        page = int(request.args.get(profile.page_param, 1))
        per_page = int(request.args.get(profile.per_page_param, 100))
    except ValueError:
        abort(400, f"{profile.page_param} and {profile.per_page_param} must be integers")
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, f"{profile.page_param} must be >= 1 and {profile.per_page_param} in "
                   f"1..{MAX_PER_PAGE}")
    return page, per_page


def _page(items: list[str], key: str, page: int, per_page: int,
          count_key: str = "pageCount") -> str:
    count = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    return f'{{"{key}":[{",".join(chunk)}],"page":{page},"{count_key}":{count}}}'


def render(order: dict, profile: BusProfile) -> dict:
    """A canonical order (the contract's names, docs/bus.md; its date a naive local time of
    the bus) as a bus of `profile` sends it: its date field, format and offset, its phone
    and source fields, in the order's own key order."""
    renamed = {"date": profile.date_field, "clientTel": profile.phone_field,
               "source": profile.source_field}
    out = {}
    for key, value in order.items():
        name = renamed.get(key, key)
        if key.startswith("_") or (key in ("date", "source") and not name):  # a field it lacks
            continue
        out[name] = _date(value, profile) if key == "date" else value
    return out


def _date(value, profile: BusProfile):
    try:
        local = dt.datetime.fromisoformat(value).replace(tzinfo=profile.zone)
    except (TypeError, ValueError):  # a garbage date (faults) goes out as it is
        return value
    if profile.date_format == "epoch":
        return int(local.timestamp())
    if profile.date_format == "epoch_ms":
        return int(local.timestamp() * 1000)
    if "%" in profile.date_format:
        return local.strftime(profile.date_format)
    return local.isoformat() if profile.timezone != "UTC" else value


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

    def draw_goods(self) -> bool:
        with self._lock:
            return self._rng.random() < self.faults.goods_error_rate

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
               password: str = "shoprecs", faults: HttpFaults = HttpFaults(),
               profile: BusProfile = BusProfile(), clock=None) -> Flask:
    """The bus over `orders` and `goods`, speaking `profile` (its parameter, key and field
    names, its date filter or none, its sort). An order with `_listed` (faults: late) is
    listed only once `clock()` (a datetime; default: never late) has reached it."""
    app = Flask("shoprecs-bus-simulator")

    def entry(order: dict) -> tuple[str, str, str, str]:
        """(day, listed, full json, short json)"""
        shown = render(order, profile)
        return (str(order["date"])[:10], str(order.get("_listed") or ""), _dumps(shown),
                _dumps({k: v for k, v in shown.items() if k != "basket"}))

    entries = [entry(o) for o in sorted(orders, key=lambda o: str(o["date"]))]
    days = [e[0] for e in entries]
    goods_json = [_dumps(g) for g in goods]
    bus = _Misbehaviour(faults)
    listing = threading.Lock()  # POST /orders inserts while pages are read
    late = any(e[1] for e in entries)
    scrambles: dict[int, list] = {}  # len(listing) -> it in an arbitrary, stable order

    def scrambled(chosen: list) -> list:
        found = scrambles.get(len(chosen))
        if found is None:
            scrambles.clear()
            found = scrambles[len(chosen)] = sorted(chosen,
                                                    key=lambda e: zlib.crc32(e[3].encode()))
        return found

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

    def day_of(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            if profile.date_filter_format == "epoch":
                moment = dt.datetime.fromtimestamp(int(value), profile.zone)
            else:
                moment = dt.datetime.strptime(value, profile.date_filter_format)
        except (ValueError, OverflowError, OSError):
            abort(400, f"bad date filter value {value!r}")
        return moment.date().isoformat()

    @app.get(profile.orders_path)
    def list_orders():
        page, per_page = _page_args(profile)
        names = profile.filter_params
        lo = day_of(request.args.get(names[0])) if names else None
        hi = day_of(request.args.get(names[1])) if len(names) == 2 else None
        expanded = all(request.args.get(k) == v for k, v in profile.expand_params.items())
        column = 2 if expanded else 3  # without the expand parameter: no baskets
        with listing:
            start = bisect.bisect_left(days, lo or "")
            stop = bisect.bisect_right(days, hi or "9999-12-31")
            chosen = entries[start:stop]
        if late:
            now = clock().isoformat() if clock is not None else "9999"
            chosen = [e for e in chosen if e[1] <= now]
        if not names and profile.order_sort == "none":  # an arbitrary order, but a stable one
            chosen = scrambled(chosen)
        items = [e[column] for e in chosen]
        if not names and profile.order_sort == "desc":
            items.reverse()
        return bus.respond(_page(items, profile.orders_key, page, per_page,
                                 profile.page_count_key))

    @app.get(profile.goods_path)
    def list_goods():
        page, per_page = _page_args(profile)
        if faults.goods_error_rate and bus.draw_goods():
            return Response('{"error":"catalog unavailable"}', 503, mimetype="application/json")
        return bus.respond(_page(goods_json, profile.goods_key, page, per_page,
                                 profile.page_count_key))

    @app.post(profile.orders_path)
    def add_order():
        order = request.get_json(silent=True)
        if not (isinstance(order, dict) and order.get("id") is not None
                and isinstance(order.get("date"), str) and len(order["date"]) >= 10
                and isinstance(order.get("basket"), list) and order["basket"]):
            abort(400, "an order is {id, date (ISO 8601), clientTel, basket: [...]}")
        with listing:
            at = bisect.bisect_right(days, order["date"][:10])
            days.insert(at, order["date"][:10])
            entries.insert(at, entry(order))
        return jsonify(id=order["id"]), 201

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
