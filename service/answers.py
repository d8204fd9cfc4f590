"""What the routes answer, each shape defined once.

An answer's shape is a TypedDict. pydantic makes both the JSON sent from it (its
serializer, in Rust: no model objects built on the request path) and the schema
/openapi.json documents (service/openapi.py), so the two cannot drift apart.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Generic, TypeVar

from pydantic import Field, StrictInt, StrictStr, TypeAdapter
from typing_extensions import TypedDict

from engine.recommender import Rule, Scored
from engine.recommender import Suggestion as Suggested

T = TypeVar("T")
GoodsId = Annotated[StrictInt | StrictStr, Field(description="a goods id, as in the catalog")]
Price = Annotated[float | None, Field(description="the price in the catalog in force "
                                      "(the hourly refresh, else the night's); null: unknown")]


class Item(TypedDict):
    goodsId: GoodsId
    rating: float
    name: str | None
    price: Price


class Neighbour(TypedDict):
    goodsId: GoodsId
    score: float
    name: str | None
    price: Price


class RuleItem(TypedDict):
    antecedent: list[GoodsId]
    consequent: list[GoodsId]
    consequentNames: list[str | None]
    confidence: float
    lift: float
    support: float


class Suggestion(Neighbour):
    because: list[GoodsId]


class Enveloped(TypedDict, Generic[T]):
    """A storefront answer with `envelope=true`: its id beside the list."""

    recommendationId: str
    items: list[T]


class Answer:
    """A list of `item`s: bare, or enveloped with the answer's id."""

    def __init__(self, item: type):
        self.item = item
        self._bare = TypeAdapter(list[item])
        self._enveloped = TypeAdapter(Enveloped[item])

    @property
    def schema(self):
        """What the document shows: the list, or the list and the answer's id."""
        return list[self.item] | Enveloped[self.item]

    def json(self, items: list, rec_id: str | None = None) -> bytes:
        if rec_id is None:
            return self._bare.dump_json(items)
        return self._enveloped.dump_json({"recommendationId": rec_id, "items": items})


RECOMMENDATIONS, SIMILAR, RULES, BASKET = (Answer(Item), Answer(Neighbour),
                                           TypeAdapter(list[RuleItem]), Answer(Suggestion))


@functools.lru_cache(maxsize=1 << 16)  # the catalog's ids, converted once
def json_id(goods_id: str):
    """Goods ids are stored as text; the API echoes numeric ones as numbers, as the bus does."""
    if goods_id.isdecimal() and goods_id.isascii() and (goods_id == "0" or goods_id[0] != "0"):
        return int(goods_id)
    return goods_id


def number(value: float) -> float:
    """A score as the API gives it: rounded to 6 places; NaN/inf (never expected) become 0."""
    value = round(float(value), 6)
    return value if math.isfinite(value) else 0.0


def scored(served, found: Iterable[Scored], prices: Mapping[str, float],
           field: str = "rating") -> list[dict]:
    """Items (`rating`) or Neighbours (`score`), named and priced by the catalog in force."""
    name = served.name
    return [{"goodsId": json_id(g), field: number(s), "name": name(g), "price": prices.get(g)}
            for g, s in found]


def suggestions(served, found: Iterable[Suggested], prices: Mapping[str, float]) -> list[dict]:
    name = served.name
    return [{"goodsId": json_id(s.goods_id), "score": number(s.score), "name": name(s.goods_id),
             "price": prices.get(s.goods_id), "because": [json_id(g) for g in s.because]}
            for s in found]


def rules(served, found: Iterable[Rule]) -> list[dict]:
    return [{"antecedent": [json_id(g) for g in r.antecedent],
             "consequent": [json_id(g) for g in r.consequent],
             "consequentNames": [served.name(g) for g in r.consequent],
             "confidence": number(r.confidence), "lift": number(r.lift),
             "support": number(r.support)} for r in found]
