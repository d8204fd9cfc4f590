"""RecommendationEngine: answers the serving API's lookups from a loaded Snapshot.

Lookups are dictionary reads on indexes built at load time; nothing here runs Spark.
Each result is kept as pre-encoded JSON fragments (`engine._encoded`), so the `*_json`
methods answer with bytes ready to send; the dict-returning methods decode those same
bytes, so both always agree. Phones arrive in any format, are normalized by the same
rules as the cleaning job and turned into the HMAC key under which the snapshot stores
shoppers.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

from engine._encoded import ItemEncoder, dumps, join, json_id, number
from engine.snapshot import Snapshot, SnapshotError, current_version
from shoprecs.phones import InvalidPhone, PhoneRules, normalize, user_key

__all__ = ["InvalidPhone", "RecommendationEngine", "UnknownProduct", "json_id"]

SORT_KEYS = ("confidence", "lift")
USER_KEY_CACHE = 65536  # phones (as sent) -> key; a few MB at most
BASKET_SOURCES = ("rules", "similar", "popular")


class UnknownProduct(LookupError):
    """The goods id is not in the served catalog."""


def _rule_order(sort: str):
    return lambda r: (-r[sort], -r["support"], r["consequent"])


def user_fragments(recs, enc: ItemEncoder) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(every rec, the recs not bought before) of one shopper, encoded."""
    return (tuple(enc.item(g, s) for g, s, _ in recs),
            tuple(enc.item(g, s) for g, s, bought in recs if not bought))


def ranked_rules(rules: list[dict], enc: ItemEncoder) -> dict[str, list[tuple[float, bytes]]]:
    """sort key -> [(confidence, fragment)] best first, for one product's rules."""
    return {key: [(r["confidence"], enc.rule(r)) for r in sorted(rules, key=_rule_order(key))]
            for key in SORT_KEYS}


def basket_entry(r: dict, enc: ItemEncoder) -> tuple:
    """(antecedent set, (confidence, lift, support), ((consequent, fragment), ...))."""
    because = ",".join(enc.goods(g) for g in r["antecedent"])
    score = number(r["confidence"])
    fragments = tuple(
        (c, f'{{"goodsId":{enc.goods(c)},"score":{score},"name":{enc.name(c)},'
            f'"because":[{because}]}}'.encode()) for c in r["consequent"])
    return (frozenset(r["antecedent"]), (r["confidence"], r["lift"], r["support"]), fragments)


def _phone_key(phone: str, *, rules: PhoneRules, hmac_key: str) -> str:
    return user_key(normalize(phone, rules), hmac_key)


class RecommendationEngine:
    def __init__(self, snapshot: Snapshot, *, hmac_key: str, rules: PhoneRules = PhoneRules()):
        self.snapshot = snapshot
        self._hmac_key = hmac_key
        self._phone_rules = rules
        # storefronts ask for the same shoppers again and again, and normalizing plus the
        # HMAC cost more than the lookup (InvalidPhone is raised again each time, not kept)
        # (a closure, not a bound method: the engine stays free of reference cycles, so the
        # old one is freed on reload without waiting for the cyclic GC)
        self._key_of = functools.lru_cache(maxsize=USER_KEY_CACHE)(
            functools.partial(_phone_key, rules=rules, hmac_key=hmac_key))
        self._encode(snapshot)

    def _encode(self, snap: Snapshot) -> None:
        enc = ItemEncoder(snap.names)
        self._users = {key: user_fragments(recs, enc)
                       for key, recs in snap.user_recs.items() if recs}
        self._popular = tuple(enc.item(g, s) for g, s in snap.popular)
        self._similar = {g: tuple(enc.item(o, s, "score") for o, s in near)
                         for g, near in snap.similar.items()}
        # product -> sort key -> [(confidence, fragment)] best first
        self._assoc = {g: ranked_rules(rules, enc) for g, rules in snap.rules_by_item.items()}
        self._index_basket_rules(snap.rules, enc)

    def _index_basket_rules(self, rules: list[dict], enc: ItemEncoder) -> None:
        """Rules by exact antecedent (a small cart looks up each of its subsets) and under
        every antecedent member (for big carts); each with its answer fragments encoded."""
        self._by_antecedent: dict[frozenset, list[tuple]] = {}
        self._by_member: dict[str, list[tuple]] = {}
        self._max_antecedent = 0
        for r in rules:
            entry = basket_entry(r, enc)
            antecedent = entry[0]
            self._by_antecedent.setdefault(antecedent, []).append(entry)
            for g in antecedent:
                self._by_member.setdefault(g, []).append(entry)
            self._max_antecedent = max(self._max_antecedent, len(antecedent))

    def _fired(self, cart: set[str]):
        """Rules whose whole antecedent is in the cart."""
        sizes = range(1, min(len(cart), self._max_antecedent) + 1)
        if sum(math.comb(len(cart), k) for k in sizes) <= 64:
            for k in sizes:
                for subset in itertools.combinations(sorted(cart), k):
                    yield from self._by_antecedent.get(frozenset(subset), ())
        else:
            for g in cart:
                for entry in self._by_member.get(g, ()):
                    if entry[0] <= cart:
                        yield entry

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

    def user_key(self, phone: str) -> str:
        """The snapshot's key for a phone in any format; InvalidPhone says why not."""
        return self._key_of(phone)

    def recommend_json(self, phone: str, limit: int = 10,
                       exclude_bought: bool = False) -> tuple[bytes, bool]:
        """(JSON list, personalized?) for a phone in any format; popular if unknown.

        `exclude_bought` leaves out goods the shopper bought in the training window (the
        batch job stores the best new goods beside the best overall, so the list stays
        full)."""
        recs = self._users.get(self.user_key(phone))
        if recs is not None:
            return join(recs[1 if exclude_bought else 0][:limit]), True
        return join(self._popular[:limit]), False

    def recommend(self, phone: str, limit: int = 10,
                  exclude_bought: bool = False) -> tuple[list[dict], bool]:
        body, personalized = self.recommend_json(phone, limit, exclude_bought)
        return json.loads(body), personalized

    def has_product(self, goods_id: str) -> bool:
        return goods_id in self.snapshot.names or goods_id in self.snapshot.rules_by_item

    def similar_json(self, goods_id: str, limit: int = 10) -> bytes:
        """Goods whose ALS item factors are closest (cosine) to `goods_id`'s."""
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        return join(self._similar.get(goods_id, ())[:limit])

    def similar(self, goods_id: str, limit: int = 10) -> list[dict]:
        return json.loads(self.similar_json(goods_id, limit))

    def associations_json(self, goods_id: str, limit: int = 10, min_confidence: float = 0.0,
                          sort: str = "confidence") -> bytes:
        """Rules "bought goods_id -> also bought ...", best first by `sort` (then support)."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {SORT_KEYS}")
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        ranked = self._assoc.get(goods_id, {}).get(sort, ())
        out = []
        for confidence, fragment in ranked:
            if len(out) == limit:
                break
            if confidence >= min_confidence:
                out.append(fragment)
        return join(out)

    def associations(self, goods_id: str, limit: int = 10, min_confidence: float = 0.0,
                     sort: str = "confidence") -> list[dict]:
        return json.loads(self.associations_json(goods_id, limit, min_confidence, sort))

    def basket_json(self, items: list[str], limit: int = 10) -> tuple[bytes, str]:
        """(what to add to a cart holding `items`, source), source one of BASKET_SOURCES.

        Rules whose whole antecedent is in the cart and whose consequent is not, one entry
        per consequent goods (its best rule), best first by confidence, lift, support.
        When no rule fires: goods most similar to any cart item; when none has neighbours:
        popular goods. Never the cart's own goods. Unknown ids are ignored (the model's
        catalog lags the shop's)."""
        cart = set(items)
        best: dict[str, tuple] = {}
        for _, key, fragments in self._fired(cart):
            if any(c in cart for c, _ in fragments):
                continue
            for goods_id, fragment in fragments:
                if goods_id not in best or key > best[goods_id][0]:
                    best[goods_id] = (key, fragment)
        if best:
            ranked = sorted(best.items(), key=lambda kv: (-kv[1][0][0], -kv[1][0][1],
                                                          -kv[1][0][2], kv[0]))
            return join(f for _, (_, f) in ranked[:limit]), "rules"
        found, source = self._basket_fallback(cart, limit)
        return dumps(found), source

    def basket(self, items: list[str], limit: int = 10) -> tuple[list[dict], str]:
        body, source = self.basket_json(items, limit)
        return json.loads(body), source

    def _basket_fallback(self, cart: set[str], limit: int) -> tuple[list[dict], str]:
        near: dict[str, tuple[float, str]] = {}
        for g in sorted(cart):
            for other, score in self.snapshot.similar.get(g, ()):
                if other not in cart and score > near.get(other, (-2.0,))[0]:
                    near[other] = (score, g)
        if near:
            ranked = sorted(near.items(), key=lambda kv: (-kv[1][0], kv[0]))
            return [self._basket_item(g, s, (src,)) for g, (s, src) in ranked[:limit]], "similar"
        popular = [(g, s) for g, s in self.snapshot.popular if g not in cart][:limit]
        return [self._basket_item(g, s, ()) for g, s in popular], "popular"

    def _basket_item(self, goods_id: str, score: float, because) -> dict:
        return {"goodsId": json_id(goods_id), "score": round(score, 6),
                "name": self.snapshot.names.get(goods_id),
                "because": [json_id(g) for g in because]}

    def find_products(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """[(goods id, name)]: the id itself if it is one, else names containing `text`."""
        text = text.strip()
        if self.has_product(text):
            return [(text, self.snapshot.names.get(text))]
        needle = text.casefold()
        found = [(g, n) for g, n in self.snapshot.names.items()
                 if needle and n and needle in n.casefold()]
        return sorted(found, key=lambda gn: (len(gn[1]), gn[1]))[:limit]

    def info(self) -> dict:
        m = self.snapshot.manifest
        return {"version": self.version, "publishedAt": m.get("published_at"),
                "trainedOn": m.get("metrics", {}).get("trained_on"),
                "window": m.get("metrics", {}).get("window"),
                "metrics": m.get("metrics", {})}

    def self_check(self) -> None:
        """Answer one lookup of each kind; SnapshotError if the snapshot cannot serve."""
        if not self._popular:
            raise SnapshotError(f"{self.version}: no popular items, so no fallback")
        try:
            self.recommend_json("+70000000000", 10)
            for key, (every, _) in list(self._users.items())[:1]:
                if not every:
                    raise SnapshotError(f"{self.version}: shopper {key[:8]}... has no recs")
            for goods_id in list(self._assoc)[:1] + list(self.snapshot.similar)[:1]:
                self.associations_json(goods_id)
                self.similar_json(goods_id)
            self.basket([g for g, _ in self.snapshot.popular[:2]])
        except (LookupError, ValueError, TypeError) as exc:
            raise SnapshotError(f"{self.version}: self-check failed: {exc!r}") from exc
