"""JSON fragments built once per snapshot, so a lookup answers by joining bytes.

A response is `[` + the first `limit` fragments joined by `,` + `]`: no json.dumps and no
dict building on the request path. The fragments are exactly what json.dumps would give
for the same items (floats use repr, as json does), so clients see no difference.
"""
from __future__ import annotations

import json
import math


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


class ItemEncoder:
    """Encodes {"goodsId": .., <field>: score, "name": ..} with a cached prefix per goods."""

    def __init__(self, names: dict[str, str]):
        self._names = names
        self._id: dict[str, str] = {}
        self._name: dict[str, str] = {}

    def goods(self, goods_id: str) -> str:
        enc = self._id.get(goods_id)
        if enc is None:
            enc = self._id[goods_id] = json.dumps(json_id(goods_id), ensure_ascii=False)
        return enc

    def name(self, goods_id: str) -> str:
        enc = self._name.get(goods_id)
        if enc is None:
            enc = self._name[goods_id] = json.dumps(self._names.get(goods_id),
                                                    ensure_ascii=False)
        return enc

    def item(self, goods_id: str, score: float, field: str = "rating") -> bytes:
        return (f'{{"goodsId":{self.goods(goods_id)},"{field}":{number(score)},'
                f'"name":{self.name(goods_id)}}}').encode()

    def rule(self, rule: dict) -> bytes:
        ids = ",".join(self.goods(g) for g in rule["antecedent"])
        cons = ",".join(self.goods(g) for g in rule["consequent"])
        names = ",".join(self.name(g) for g in rule["consequent"])
        return (f'{{"antecedent":[{ids}],"consequent":[{cons}],"consequentNames":[{names}],'
                f'"confidence":{number(rule["confidence"])},"lift":{number(rule["lift"])},'
                f'"support":{number(rule["support"])}}}').encode()


def join(fragments) -> bytes:
    return b"[" + b",".join(fragments) + b"]"
