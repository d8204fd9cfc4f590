"""The API's JSON for the engine's answers, with each goods' id and name encoded once.

An answer is a JSON array of small objects: `[` + fragments joined by `,` + `]`. Per
served engine the goods' ids and names are encoded on first use and kept, so a lookup
formats only its scores: no json.dumps and no dict building on the request path. The
fragments are exactly what json.dumps would give for the same items (floats use repr, as
json does), so clients see no difference.
"""
from __future__ import annotations

import json
import math
import threading
import weakref
from collections.abc import Mapping
from types import MappingProxyType

from engine.recommender import Rule, Scored, Suggestion

EMPTY: Mapping[str, float] = MappingProxyType({})


def dumps(obj) -> bytes:
    """Compact UTF-8 JSON, the one encoding every response uses."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


def json_id(goods_id: str):
    """Goods ids are stored as text; the API echoes numeric ones as numbers, as the bus does."""
    if goods_id.isdecimal() and goods_id.isascii() and (goods_id == "0" or goods_id[0] != "0"):
        return int(goods_id)
    return goods_id


def number(value: float) -> str:
    """A score as JSON: rounded to 6 places; NaN/inf (never expected) become 0."""
    value = round(float(value), 6)
    return repr(value) if math.isfinite(value) else "0.0"


class Encoder:
    """Encodes one engine's answers; ids and names cached per goods."""

    def __init__(self, engine):
        self._engine = weakref.proxy(engine)  # the cache below must not keep it alive
        self._id: dict[str, str] = {}
        self._name: dict[str, str] = {}
        self._prices: tuple[Mapping | None, dict[str, str]] = (None, {})

    def goods(self, goods_id: str) -> str:
        enc = self._id.get(goods_id)
        if enc is None:
            enc = self._id[goods_id] = json.dumps(json_id(goods_id), ensure_ascii=False)
        return enc

    def name(self, goods_id: str) -> str:
        enc = self._name.get(goods_id)
        if enc is None:
            enc = self._name[goods_id] = json.dumps(self._engine.name(goods_id),
                                                    ensure_ascii=False)
        return enc

    def price(self, goods_id: str, prices: Mapping[str, float]) -> str:
        """The goods' price in the catalog in force (`prices`, which a refresh replaces
        whole: the encoded prices are kept per mapping), or null."""
        cached = self._prices
        if cached[0] is not prices:
            cached = self._prices = (prices, {})
        enc = cached[1].get(goods_id)
        if enc is None:
            value = prices.get(goods_id)
            enc = cached[1][goods_id] = "null" if value is None else number(value)
        return enc

    def items(self, items: tuple[Scored, ...] | list[Scored], field: str = "rating",
              prices: Mapping[str, float] = EMPTY) -> bytes:
        """[{"goodsId", <field>: score, "name", "price"}]: recommendations (rating) or
        similar goods (score), priced by the catalog in force."""
        return _array(f'{{"goodsId":{self.goods(g)},"{field}":{number(s)},'
                      f'"name":{self.name(g)},"price":{self.price(g, prices)}}}'
                      for g, s in items)

    def rules(self, rules: list[Rule]) -> bytes:
        return _array(
            f'{{"antecedent":[{",".join(self.goods(g) for g in r.antecedent)}],'
            f'"consequent":[{",".join(self.goods(g) for g in r.consequent)}],'
            f'"consequentNames":[{",".join(self.name(g) for g in r.consequent)}],'
            f'"confidence":{number(r.confidence)},"lift":{number(r.lift)},'
            f'"support":{number(r.support)}}}' for r in rules)

    def suggestions(self, suggestions: list[Suggestion],
                    prices: Mapping[str, float] = EMPTY) -> bytes:
        return _array(
            f'{{"goodsId":{self.goods(s.goods_id)},"score":{number(s.score)},'
            f'"name":{self.name(s.goods_id)},"price":{self.price(s.goods_id, prices)},'
            f'"because":[{",".join(self.goods(g) for g in s.because)}]}}' for s in suggestions)


def _array(fragments) -> bytes:
    return ("[" + ",".join(fragments) + "]").encode()


_encoders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def encoder(engine) -> Encoder:
    """The encoder of `engine` (one per served engine; a reload brings a new one)."""
    found = _encoders.get(engine)
    if found is None:
        with _lock:
            found = _encoders.setdefault(engine, Encoder(engine))
    return found
