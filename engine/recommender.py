"""RecommendationEngine: answers the serving API's lookups from a loaded Snapshot.

Lookups are dictionary reads on indexes built at load time; nothing here runs Spark.
Phones arrive in any format, are normalized by the same rules as the cleaning job and
turned into the HMAC key under which the snapshot stores shoppers.
"""
from __future__ import annotations

from pathlib import Path

from engine.snapshot import Snapshot, SnapshotError, current_version
from shoprecs.phones import InvalidPhone, PhoneRules, normalize, user_key

__all__ = ["InvalidPhone", "RecommendationEngine", "UnknownProduct"]

SORT_KEYS = ("confidence", "lift")


class UnknownProduct(LookupError):
    """The goods id is not in the served catalog."""


def json_id(goods_id: str):
    """Goods ids are stored as text; the API echoes numeric ones as numbers, as the bus does."""
    if goods_id.isdecimal() and goods_id.isascii() and (goods_id == "0" or goods_id[0] != "0"):
        return int(goods_id)
    return goods_id


class RecommendationEngine:
    def __init__(self, snapshot: Snapshot, *, hmac_key: str, rules: PhoneRules = PhoneRules()):
        self.snapshot = snapshot
        self._hmac_key = hmac_key
        self._phone_rules = rules

    @classmethod
    def from_warehouse(cls, root: str | Path, **kwargs) -> RecommendationEngine:
        version = current_version(root)
        if version is None:
            raise SnapshotError(f"nothing published yet: {Path(root) / 'serving' / 'CURRENT'} "
                                "is missing; run the pipeline (shoprecs run) first")
        return cls(Snapshot.load(Path(root) / "serving" / version), **kwargs)

    @property
    def version(self) -> str:
        return self.snapshot.version

    def _item(self, goods_id: str, score: float, field: str = "rating") -> dict:
        return {"goodsId": json_id(goods_id), field: round(score, 6),
                "name": self.snapshot.names.get(goods_id)}

    def recommend(self, phone: str, limit: int = 10,
                  exclude_bought: bool = False) -> tuple[list[dict], bool]:
        """(recommendations, personalized?) for a phone in any format; popular if unknown.

        `exclude_bought` leaves out goods the shopper bought in the training window (the
        batch job stores the best new goods beside the best overall, so the list stays
        full)."""
        key = user_key(normalize(phone, self._phone_rules), self._hmac_key)
        recs = self.snapshot.user_recs.get(key)
        if recs:
            if exclude_bought:
                recs = [r for r in recs if not r[2]]
            return [self._item(g, s) for g, s, _ in recs[:limit]], True
        return [self._item(g, s) for g, s in self.snapshot.popular[:limit]], False

    def similar(self, goods_id: str, limit: int = 10) -> list[dict]:
        """Goods whose ALS item factors are closest (cosine) to `goods_id`'s."""
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        return [self._item(g, s, "score")
                for g, s in self.snapshot.similar.get(goods_id, ())[:limit]]

    def has_product(self, goods_id: str) -> bool:
        return goods_id in self.snapshot.names or goods_id in self.snapshot.rules_by_item

    def associations(self, goods_id: str, limit: int = 10, min_confidence: float = 0.0,
                     sort: str = "confidence") -> list[dict]:
        """Rules "bought goods_id -> also bought ...", best first by `sort` (then support)."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {SORT_KEYS}")
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        rules = [r for r in self.snapshot.rules_by_item.get(goods_id, ())
                 if r["confidence"] >= min_confidence]
        rules.sort(key=lambda r: (-r[sort], -r["support"], r["consequent"]))
        return [{"antecedent": [json_id(g) for g in r["antecedent"]],
                 "consequent": [json_id(g) for g in r["consequent"]],
                 "consequentNames": [self.snapshot.names.get(g) for g in r["consequent"]],
                 "confidence": round(r["confidence"], 6), "lift": round(r["lift"], 6),
                 "support": round(r["support"], 6)} for r in rules[:limit]]

    def info(self) -> dict:
        m = self.snapshot.manifest
        return {"version": self.version, "publishedAt": m.get("published_at"),
                "trainedOn": m.get("metrics", {}).get("trained_on"),
                "window": m.get("metrics", {}).get("window"),
                "metrics": m.get("metrics", {})}
