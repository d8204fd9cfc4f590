"""Serving from MongoDB: the RecommendationEngine's lookups, read per request, LRU-cached.

The seam is `RecommendationEngine._index`, the one method that builds the in-memory
indexes from a snapshot. `MongoEngine` overrides it to bind the same index names to
`_Lru` views that fetch one document on a miss and shape it with the very functions the
snapshot engine uses (`user_lists`, `ranked_rules`, `as_rule`), so both answer alike;
every lookup method above the indexes is inherited unchanged.
Popular items and the manifest are read once per version; goods names are fetched in one
query per answer and cached. Misses are cached too (an unknown shopper costs one query
per `cache_size` lookups, not one per request).

    holder = EngineHolder(root, lambda snap: engine_for(snap, hmac_key=KEY),
                          source=MongoSource(connect(uri)[db]))
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

import numpy as np
from cachetools import LRUCache

from engine.index import DEFAULT_WEIGHTS, blend, trending_scores
from engine.mongo import VERSIONS, MongoStore, MongoStoreError
from engine.recommender import RecommendationEngine, Rule, Scored, as_rule, ranked_rules, user_lists
from engine.shoprules import catalog_rules

_MISSING = object()


class _Lru:
    """key -> value fetched on a miss (None: absent), in a thread-safe LRU."""

    def __init__(self, fetch_many: Callable[[list], dict], maxsize: int):
        self._fetch_many = fetch_many
        self._cache = LRUCache(maxsize)
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_many(self, keys: Iterable) -> dict:
        found, missing = {}, []
        with self._lock:
            for key in keys:
                value = self._cache.get(key, _MISSING)
                if value is _MISSING:
                    missing.append(key)
                else:
                    found[key] = value
            self.hits += len(found)
            self.misses += len(missing)
        if missing:
            fetched = self._fetch_many(missing)  # outside the lock: readers never wait on I/O
            with self._lock:
                for key in missing:
                    found[key] = self._cache[key] = fetched.get(key)
        return found

    def get(self, key, default=None):
        value = self.get_many((key,))[key]
        return default if value is None else value

    def __contains__(self, key) -> bool:
        return self.get(key) is not None


class _Names:
    """The catalog's names, as much of a dict as the engine needs."""

    def __init__(self, coll, maxsize: int):
        self._coll = coll
        self._lru = _Lru(self._fetch, maxsize)

    def _fetch(self, ids: list) -> dict:
        return {d["_id"]: (d.get("name"),) for d in self._coll.find({"_id": {"$in": ids}})}

    def prefetch(self, ids: Iterable[str]) -> None:
        self._lru.get_many(set(ids))

    def get(self, goods_id: str, default=None):
        found = self._lru.get(goods_id)
        return default if found is None else found[0]

    def __contains__(self, goods_id: str) -> bool:
        return self._lru.get(goods_id) is not None

    def search(self, text: str) -> list[tuple[str, str]]:
        pattern = {"$regex": re.escape(text), "$options": "i"}
        return [(d["_id"], d["name"]) for d in self._coll.find({"name": pattern})]


class MongoSnapshot:
    """One complete version in MongoDB, shaped like the parts of Snapshot the engine reads."""

    def __init__(self, store: MongoStore, version: str, cache_size: int = 100_000):
        doc = store.db[VERSIONS].find_one({"_id": version})
        if not doc or doc.get("state") != "complete":
            raise MongoStoreError(f"version {version} is not completely published in MongoDB "
                                  f"({store.db.name}.{VERSIONS}); publish it again")
        self.store, self.version, self.cache_size = store, version, cache_size
        self.manifest = doc.get("manifest") or {"version": version}
        self.names = _Names(store.collection("catalog", version), cache_size)
        # availability, categories and prices, as the night's catalog had them (read once:
        # a catalog refresh, engine/shoprules.py, overrides them during the day)
        self.shop_rules = catalog_rules({"goods_id": d.pop("_id"), **d} for d in
                                        store.collection("catalog", version).find({}, {"name": 0}))
        self.popular = [(d["goods_id"], d["score"]) for d in
                        store.collection("popular", version).find().sort("_id", 1)]
        sim = store.collection("similar", version)
        self.similar = _Lru(lambda ids: {d["_id"]: [tuple(i) for i in d["items"]]
                                         for d in sim.find({"_id": {"$in": ids}})}, cache_size)
        bought = store.collection("history", version)
        # versions published before the purchase history existed lack it
        self.history = _Lru(lambda keys: {d["_id"]: frozenset(d["goods"]) for d in bought.find(
            {"_id": {"$in": keys}})}, cache_size) if "history" in doc.get("counts", {}) else None

    def rules_with(self, goods_ids: list[str], single: bool = False) -> list[Rule]:
        """The rules whose antecedent holds any of `goods_ids` (`single`: is one of them),
        their consequents' names fetched."""
        query = {"antecedent": {"$in": goods_ids}, **({"size": 1} if single else {})}
        rules = [as_rule(r) for r in self.store.collection("rules", self.version).find(query)]
        self.names.prefetch(c for r in rules for c in r.consequent)
        return rules


class MongoSource:
    """Versions for EngineHolder: the pointer document says which one to serve."""

    def __init__(self, db, cache_size: int = 100_000):
        self.store, self.cache_size = MongoStore(db), cache_size
        self.pointer = f"{db.name}.serving (_id 'current')"

    def current_version(self) -> str | None:
        return self.store.current_version()

    def load(self, version: str) -> MongoSnapshot:
        return MongoSnapshot(self.store, version, self.cache_size)


class MongoEngine(RecommendationEngine):
    """RecommendationEngine over a MongoSnapshot: same lookups, documents fetched lazily."""

    def _index(self, snap: MongoSnapshot) -> None:
        size = snap.cache_size
        users = snap.store.collection("user_recs", snap.version)

        def fetch_users(keys):
            docs = list(users.find({"_id": {"$in": keys}}))
            snap.names.prefetch(r[0] for d in docs for r in d["recs"])
            return {d["_id"]: user_lists(d["recs"]) for d in docs if d["recs"]}

        def fetch_similar(ids):
            near = snap.similar.get_many(ids)
            snap.names.prefetch(o for n in near.values() if n for o, _ in n)
            return {g: tuple(Scored(o, s) for o, s in n) for g, n in near.items() if n}

        def fetch_assoc(ids):
            rules = snap.rules_with(ids, single=True)
            return {g: ranked_rules([r for r in rules if r.antecedent[0] == g])
                    for g in {r.antecedent[0] for r in rules}}

        def fetch_members(ids):
            rules = snap.rules_with(ids)
            return {g: [r for r in rules if g in r.antecedent] for g in ids}

        self._users = _Lru(fetch_users, size)
        self._history = snap.history
        self._popular = tuple(Scored(g, s) for g, s in snap.popular)
        self._similar = _Lru(fetch_similar, size)
        self._assoc = _Lru(fetch_assoc, size)
        self._by_member = _Lru(fetch_members, size)
        self._by_category = None
        self._ranking = _Ranking(self, snap)

    def _fired(self, cart: set[str]):
        """Rules whose whole antecedent is in the cart: one query for the uncached items."""
        for rules in self._by_member.get_many(sorted(cart)).values():
            for rule in rules or ():
                if set(rule.antecedent) <= cart:
                    yield rule

    def has_product(self, goods_id: str) -> bool:
        return goods_id in self.snapshot.names or goods_id in self._assoc

    def find_products(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        text = text.strip()
        if self.has_product(text):
            return [(text, self.snapshot.names.get(text))]
        found = [(g, n) for g, n in self.snapshot.names.search(text) if text and n]
        return sorted(found, key=lambda gn: (len(gn[1]), gn[1]))[:limit]

    def self_check(self) -> None:
        """Answer one lookup of each kind; MongoStoreError if the version cannot serve."""
        snap = self.snapshot
        if not self._popular:
            raise MongoStoreError(f"{self.version}: no popular items, so no fallback")
        try:
            self.recommend("+70000000000", 10)
            user = snap.store.collection("user_recs", self.version).find_one()
            if user is not None and self._users.get(user["_id"]) is None:
                raise MongoStoreError(f"{self.version}: shopper {user['_id'][:8]}... has no recs")
            rule = snap.store.collection("rules", self.version).find_one({"size": 1})
            for goods_id in ([rule["antecedent"][0]] if rule else []) + [g for g, _ in
                                                                          snap.popular[:1]]:
                self.associations(goods_id)
                self.similar(goods_id)
            self.basket([g for g, _ in snap.popular[:2]])
        except (LookupError, ValueError, TypeError, KeyError) as exc:
            raise MongoStoreError(f"{self.version}: self-check failed: {exc!r}") from exc


class _Ranking:
    """What `_ranked_now` ranks a shopper's goods with, read from MongoDB: the neighbours of
    their history and trending goods (`engine.index.blend`; the ALS factors stay in the
    warehouse's index, so MongoDB ranks without that term)."""

    def __init__(self, engine: MongoEngine, snap: MongoSnapshot):
        self.engine = engine
        self.goods = sorted(set(snap.store.collection("catalog", snap.version).distinct("_id"))
                            | {g for g, _ in snap.popular})
        self.goods_position = {g: i for i, g in enumerate(self.goods)}
        self.weights = {**DEFAULT_WEIGHTS, **(snap.manifest.get("metrics", {}).get("blend")
                                              or {})}
        self.trending = trending_scores(self.goods_position, snap.popular)

    def user(self, key: str) -> str | None:
        history = self.engine._history
        return key if history is not None and history.get(key) else None

    def scores(self, key: str) -> np.ndarray | None:
        near = np.zeros(len(self.goods), np.float32)
        for goods_id in self.engine._history.get(key) or ():
            for other, score in self.engine._similar.get(goods_id) or ():
                if other in self.goods_position:
                    near[self.goods_position[other]] += score
        return blend(self.weights, self.trending, near=near)


def engine_for(snapshot, **kwargs) -> RecommendationEngine:
    """The engine for what a store loaded: MongoEngine for a MongoSnapshot."""
    cls = MongoEngine if isinstance(snapshot, MongoSnapshot) else RecommendationEngine
    return cls(snapshot, **kwargs)
