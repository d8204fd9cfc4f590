"""The WSGI layer in front of Flask: hot lookups answered directly, every request measured.

The storefront's lookups (user recommendations, associations, similar items, baskets) are
answered here from the engine's pre-encoded JSON, skipping Werkzeug's request objects,
routing and Flask's context: the profile of the Flask path showed those, not the lookup,
dominating (bench/RESULTS.md). The fast path only ever answers success: anything it is
not sure of (a bad parameter, an unknown product, a percent-encoded query, a missing API
key, a bug) falls through to the Flask views, which give the same answer or the JSON
error. Tests compare both paths on the same requests.
"""
from __future__ import annotations

import io
import json
from time import perf_counter

from service import params
from service.auth import ENVIRON_KEY, key_matches
from service.metrics import ROUTES, Metrics, route_of

USERS, ASSOCIATIONS, SIMILAR = ROUTES.values()
BASKET = "/recommendations/basket"
FAST_GET = frozenset(ROUTES.values())
MAX_FAST_BODY = 16384
_ALLOWED = {USERS: {"limit", "exclude_bought"},
            ASSOCIATIONS: {"limit", "min_confidence", "sort"},
            SIMILAR: {"limit"}}


def _query(text: str, allowed: set[str]) -> dict[str, str] | None:
    """Plain `k=v&k=v` queries of known keys, else None (Flask decodes the rest)."""
    if not text:
        return {}
    if "%" in text or "+" in text:
        return None
    out = {}
    for pair in text.split("&"):
        key, sep, value = pair.partition("=")
        if not sep or key in out or key not in allowed:
            return None
        out[key] = value
    return out


class ServingMiddleware:
    def __init__(self, app, holder, metrics: Metrics, storefront_keys: tuple[bytes, ...],
                 fast: bool = True, max_body: int = MAX_FAST_BODY):
        self.app, self.holder, self.metrics = app, holder, metrics
        self.keys, self.fast = storefront_keys, fast
        self.max_body = min(max_body, MAX_FAST_BODY)

    def __call__(self, environ, start_response):
        started = perf_counter()
        route = route_of(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        answer = None
        if self.fast and route in FAST_GET and method == "GET":
            answer = self._answer(route, environ)
        elif self.fast and route == BASKET and method == "POST":
            answer = self._basket(environ)
        if answer is not None:
            start_response("200 OK", answer[0])
            self.metrics.observe(route, "200", perf_counter() - started)
            return [answer[1]]
        status = []

        def capture(line, headers, exc_info=None):
            status.append(line[:3])
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            self.metrics.observe(route, status[0] if status else "500", perf_counter() - started)

    def _answer(self, route: str, environ) -> tuple[list, bytes] | None:
        try:
            if self.keys and not key_matches(environ.get(ENVIRON_KEY), self.keys):
                return None
            engine = self.holder.engine
            args = _query(environ.get("QUERY_STRING", ""), _ALLOWED[route])
            segment = environ["PATH_INFO"].split("/")[2]
            if engine is None or args is None or not segment.isascii():
                return None
            limit = params.limit(args.get("limit"))
            extra = []
            if route == USERS:
                body, personalized = engine.recommend_json(
                    segment, limit, params.flag("exclude_bought", args.get("exclude_bought")))
                extra = [("X-Recommendation-Source", "personalized" if personalized
                          else "popular")]
            elif route == ASSOCIATIONS:
                body = engine.associations_json(
                    segment, limit, params.min_confidence(args.get("min_confidence")),
                    params.sort(args.get("sort")))
            else:
                body = engine.similar_json(segment, limit)
        except Exception:  # noqa: BLE001 - Flask answers it, with the right error
            return None
        return _headers(body, engine.version, extra), body

    def _basket(self, environ) -> tuple[list, bytes] | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 <= length <= self.max_body:
            return None  # Flask reads it (and applies the body limit)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask can still read it if we give up
        try:
            engine = self.holder.engine
            if engine is None or (self.keys and not key_matches(environ.get(ENVIRON_KEY),
                                                                 self.keys)):
                return None
            items, limit = params.basket(json.loads(body))
            answer, source = engine.basket_json(items, limit)
        except Exception:  # noqa: BLE001 - Flask answers it, with the right error
            return None
        return _headers(answer, engine.version, [("X-Recommendation-Source", source)]), answer


def _headers(body: bytes, version: str, extra: list) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("X-Model-Version", version), *extra]
