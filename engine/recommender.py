"""RecommendationEngine: answers the serving API's lookups from a loaded Snapshot.

Shoppers are read from the version's mapped arrays (engine/index.py), goods and rules
from dictionaries built at load; past a shopper's precomputed list their goods are ranked
at request time from the same arrays (`_ranked_now`). Nothing here runs Spark, and
nothing here knows HTTP: the answers are plain data (`Scored`, `Rule`, `Suggestion`
tuples, goods ids as text), and the service decides how they leave. Phones arrive in any
format, are normalized by the same rules as the cleaning job and turned into the HMAC key
under which the snapshot stores shoppers.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.phones import InvalidPhone, PhoneRules, normalize, user_key
from engine.index import ServingIndex
from engine.shoprules import NO_FILTER, Filter, ShopRules, request_filter
from engine.snapshot import Snapshot, SnapshotError, current_version

__all__ = ["Filter", "InvalidPhone", "RecommendationEngine", "Rule", "Scored", "Suggestion",
           "UnknownProduct"]

SORT_KEYS = ("confidence", "lift")
USER_KEY_CACHE = 65536  # phones (as sent) -> key; a few MB at most
# Where an answer's goods came from (the X-Recommendation-Source header, comma-joined):
# the shopper's precomputed list, the session's `recent` goods, association rules, similar
# goods, popular goods (alone for strangers, or filling a list a filter thinned).
SOURCES = ("personalized", "context", "rules", "similar", "popular")
MAX_RECENT = 20  # `recent` goods looked at, most recent first
CONTEXT_RULES = 20  # rules per recent goods
CONTEXT_WEIGHT = 0.5  # the session's share of a known shopper's blended score


# Words that tell variants of one product apart: colours and sizes ("the same thing in red").
VARIANT_WORDS = frozenset("""
    red blue green yellow pink purple orange black white grey gray brown ivory cream gold
    silver beige turquoise lilac navy teal aqua mint coral rose natural clear
    small medium large mini jumbo big little giant xs xl xxl
""".split())


def variant_key(name: str | None) -> str | None:
    """What is left of a goods name without its colour and size words (lower case):
    "JUMBO BAG RED RETROSPOT" and "Jumbo Bag Pink Retrospot" are variants of "bag retrospot"."""
    if not name:
        return None
    words = [w for w in re.split(r"[^\w]+", name.lower()) if w and w not in VARIANT_WORDS]
    return " ".join(words) or None


class UnknownProduct(LookupError):
    """The goods id is not in the served catalog."""


class Scored(NamedTuple):
    """A recommended goods and its score (a rating, or a similarity)."""

    goods_id: str
    score: float


class Rule(NamedTuple):
    """An association rule: who bought all of `antecedent` also bought `consequent`."""

    antecedent: tuple[str, ...]
    consequent: tuple[str, ...]
    confidence: float
    lift: float
    support: float


class Suggestion(NamedTuple):
    """What to add to a cart, with the score it won by and the cart goods it came from."""

    goods_id: str
    score: float
    because: tuple[str, ...]


def as_rule(row: dict) -> Rule:
    return Rule(tuple(row["antecedent"]), tuple(row["consequent"]), row["confidence"],
                row["lift"], row["support"])


def user_lists(recs) -> tuple[tuple[Scored, ...], tuple[Scored, ...]]:
    """(every rec, the recs not bought before) of one shopper, from (goods, score, bought)."""
    return (tuple(Scored(g, s) for g, s, _ in recs),
            tuple(Scored(g, s) for g, s, bought in recs if not bought))


def ranked_rules(rules: list[Rule]) -> dict[str, tuple[Rule, ...]]:
    """sort key -> one product's rules, best first (then support, then consequent)."""
    return {key: tuple(sorted(rules, key=lambda r: (-getattr(r, key), -r.support,
                                                    r.consequent)))
            for key in SORT_KEYS}


def _phone_key(phone: str, *, rules: PhoneRules, hmac_key) -> str:
    return user_key(normalize(phone, rules), hmac_key)


class RecommendationEngine:
    def __init__(self, snapshot: Snapshot, *, hmac_key: str | tuple[str, ...],
                 rules: PhoneRules = PhoneRules()):
        self.snapshot = snapshot
        # storefronts ask for the same shoppers again and again, and normalizing plus the
        # HMAC cost more than the lookup (InvalidPhone is raised again each time, not kept)
        # (a closure, not a bound method: the engine stays free of reference cycles, so the
        # old one is freed on reload without waiting for the cyclic GC)
        self._key_of = functools.lru_cache(maxsize=USER_KEY_CACHE)(
            functools.partial(_phone_key, rules=rules, hmac_key=hmac_key))
        self._filters: tuple[ShopRules, Filter] | None = None
        self._index(snapshot)

    def filter(self, rules: ShopRules, exclude: Sequence[str] = (),
               categories: Sequence[str] | None = None) -> Filter:
        """The Filter of one request: `rules` (engine.shoprules.RulesHolder.current()), else
        this snapshot's catalog, and the request's own `exclude` and `categories`."""
        cached = self._filters
        if cached is None or cached[0] is not rules:  # the same rules: the same hidden set
            snapshot_rules = getattr(self.snapshot, "shop_rules", None) or ShopRules()
            cached = self._filters = (rules, request_filter(rules, snapshot_rules))
        if exclude or categories is not None:
            return dataclasses.replace(
                cached[1], exclude=frozenset(exclude),
                categories=None if categories is None else frozenset(categories))
        return cached[1]

    def _index(self, snap: Snapshot) -> None:
        self._ranking = snap.index  # ranks past the list (`_ranked_now`)
        self._users = _Lists(snap.index)
        self._history = _Bought(snap.index) if snap.index.has_history else None
        self._popular = tuple(Scored(g, s) for g, s in snap.popular)
        self._similar = _Near(snap.index)
        # (the catalog's category mapping, {categories: (goods mask, positions)})
        self._by_category: tuple[object, dict] | None = None
        self._assoc = {g: ranked_rules([as_rule(r) for r in found])
                       for g, found in snap.rules_by_item.items()}
        rules = [as_rule(r) for r in snap.rules]
        # Baskets: rules by exact antecedent (a small cart looks up each of its subsets)
        # and under every antecedent member (for big carts).
        self._by_antecedent: dict[frozenset, list[Rule]] = {}
        self._by_member: dict[str, list[Rule]] = {}
        for r in rules:
            self._by_antecedent.setdefault(frozenset(r.antecedent), []).append(r)
            for g in r.antecedent:
                self._by_member.setdefault(g, []).append(r)
        self._max_antecedent = max((len(r.antecedent) for r in rules), default=0)

    def _fired(self, cart: set[str]):
        """Rules whose whole antecedent is in the cart."""
        sizes = range(1, min(len(cart), self._max_antecedent) + 1)
        if sum(math.comb(len(cart), k) for k in sizes) <= 64:
            for k in sizes:
                for subset in itertools.combinations(sorted(cart), k):
                    yield from self._by_antecedent.get(frozenset(subset), ())
        else:
            for g in cart:
                for rule in self._by_member.get(g, ()):
                    if set(rule.antecedent) <= cart:
                        yield rule

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

    def name(self, goods_id: str) -> str | None:
        """The goods' name in the served catalog, or None."""
        return self.snapshot.names.get(goods_id)

    def user_key(self, phone: str) -> str:
        """The snapshot's key for a phone in any format; InvalidPhone says why not."""
        return self._key_of(phone)

    def recommend(self, phone: str, limit: int = 10, exclude_bought: bool = False, *,
                  only: Filter = NO_FILTER, recent: Sequence[str] = ()
                  ) -> tuple[tuple[Scored, ...], tuple[str, ...]]:
        """(best goods first, sources) for a phone in any format (SOURCES).

        A known shopper gets their precomputed list; `recent` goods of this session (most
        recent first) blend their neighbours and rules into it, or make the whole list of
        a shopper the model does not know; goods `only` refuses are skipped, and a list they
        thinned is filled with the best popular goods `only` allows. `exclude_bought` leaves
        out every goods the shopper ever bought (`owned`), on the list, the context and the
        fill (the batch job stores the best new goods beside the best overall, so the list
        stays full); `recent` goods are never offered back."""
        key = self.user_key(phone)
        forgotten = only.forgets(key, self.snapshot.manifest.get("published_at", ""))
        recs = None if forgotten else self._users.get(key)
        owned = self.owned(key) if exclude_bought and not forgotten else frozenset()
        personal: Sequence[Scored] = () if recs is None else recs[1 if exclude_bought else 0]
        skip = frozenset(recent) | owned
        context = self._context(recent[:MAX_RECENT], skip) if recent else {}
        ranked = _blend(personal, context) if context else personal
        if not (only.active or skip):  # the fast paths (no `recent`: no context)
            if len(ranked) >= limit:
                return tuple(ranked[:limit]), ("personalized",)
            if not ranked:
                return self._popular[:limit], ("popular",)
        if only.categories is not None and isinstance(ranked, _Ranked):
            # a category page: the list's goods of those categories, picked by the mask
            ranked = ranked.where(self._in_categories(only)[0][ranked.positions])
        found = only.keep((r for r in ranked if r.goods_id not in skip), limit)
        # A list the filters thinned, or shorter than asked, goes on with the shopper's
        # next best goods among those the filters allow, ranked now from the model; popular
        # goods fill what is left, and the whole list of a shopper the version does not
        # know (never goods they bought, when `exclude_bought`: the history has all).
        if context:  # which of the goods found came from the shopper's list, which not
            listed = {g for g, _ in personal}
            mine = any(g in listed for g, _ in found)
            blended = any(g in context for g, _ in found)
        else:
            mine, blended = bool(found), False
        now = [] if forgotten else self._ranked_now(
            key, limit - len(found), only, skip.union(g for g, _ in found))
        found += now
        filled = self._fill(limit - len(found), only, skip.union(g for g, _ in found)) \
            if not exclude_bought or self._history is not None else []
        sources = tuple(name for name, came in (
            ("personalized", mine or now), ("context", blended), ("popular", filled)) if came)
        return tuple(found + filled), sources

    def owned(self, key: str | None) -> frozenset[str]:
        """Every goods the shopper of `key` bought: the version's purchase history (a
        version published without one knows only its stored lists' bought goods)."""
        if key is None:
            return frozenset()
        if self._history is not None:
            return self._history.get(key) or frozenset()
        recs = self._users.get(key)
        return frozenset(g for g, _ in recs[0]) - frozenset(g for g, _ in recs[1]) \
            if recs else frozenset()

    def popular(self, limit: int = 10, *, only: Filter = NO_FILTER, skip: Sequence[str] = ()
                ) -> tuple[tuple[Scored, ...], tuple[str, ...]]:
        """(the best-selling goods `only` allows, not `skip`, sources): the same for every
        shopper (an experiment's `popular` variant, experiments/arms.py)."""
        if not (only.active or skip):
            return self._popular[:limit], ("popular",)
        found = self._fill(limit, only, frozenset(skip))
        return tuple(found), ("popular",) if found else ()

    def _fill(self, n: int, only: Filter, taken: frozenset[str]) -> list[Scored]:
        """The `n` best-selling goods `only` allows, none of `taken`: what every list that
        comes out short is filled with."""
        if n <= 0:
            return []
        return only.keep((p for p in self._popular if p.goods_id not in taken), n)

    def _ranked_now(self, key: str, n: int, only: Filter, taken: frozenset[str]
                    ) -> list[Scored]:
        """The shopper's `n` best goods `only` allows, none of `taken`, ranked at request
        time as the night ranks goods new to them (engine/index.py, `scores`); nothing for
        a shopper the version knows nothing personal of, and no goods nothing scores."""
        ranking = self._ranking
        user = None if n <= 0 or ranking is None else ranking.user(key)
        if user is None:
            return []
        scores = ranking.scores(user)
        if scores is None:
            return []
        if only.categories is not None:
            pool = self._in_categories(only)[1]
            scores = scores[pool]
        else:
            pool = None
        goods = ranking.goods
        # the best 5n beyond `taken` first (where the allowed goods usually lie), else all
        for depth in (5 * n + len(taken), len(scores)):
            top = np.argpartition(-scores, depth)[:depth] if depth < len(scores) \
                else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            top = top[scores[top] > 0]
            order = top if pool is None else pool[top]
            found = only.keep(((goods[g], s) for g, s in zip(order.tolist(),
                                                           scores[top].tolist())
                               if goods[g] not in taken), n)
            if len(found) == n or depth >= len(scores):
                break
        return [Scored(g, s) for g, s in found]

    def _in_categories(self, only: Filter) -> tuple[np.ndarray, np.ndarray]:
        """(mask over goods positions, positions) of the goods of `only`'s categories, by
        its catalog; kept per set of categories until the catalog changes."""
        cached = self._by_category
        if cached is None or cached[0] is not only.category_of:
            cached = self._by_category = (only.category_of, {})
        found = cached[1].get(only.categories)
        if found is None:
            position = self._ranking.goods_position
            mask = np.zeros(len(position), bool)
            mask[[position[g] for g, c in only.category_of.items()
                  if c in only.categories and g in position]] = True
            if len(cached[1]) > 1024:  # requests may name any mix of categories
                cached[1].clear()
            found = cached[1][only.categories] = (mask, np.flatnonzero(mask))
        return found

    def _context(self, recent: Sequence[str], skip: frozenset[str]) -> dict[str, float]:
        """goods -> score from the neighbours and rules of `recent` goods, the most recent
        weighing most (1, 1/2, 1/3, ...)."""
        scores: dict[str, float] = {}
        for n, goods_id in enumerate(recent):
            weight = 1.0 / (n + 1)
            for other, score in self._similar.get(goods_id, ()):
                scores[other] = scores.get(other, 0.0) + weight * max(score, 0.0)
            for rule in self._assoc.get(goods_id, {}).get("confidence", ())[:CONTEXT_RULES]:
                for other in rule.consequent:
                    scores[other] = scores.get(other, 0.0) + weight * rule.confidence
        return {g: s for g, s in scores.items() if g not in skip and s > 0}

    def has_product(self, goods_id: str) -> bool:
        return goods_id in self.snapshot.names or goods_id in self._assoc

    def similar(self, goods_id: str, limit: int = 10, *, only: Filter = NO_FILTER
                ) -> tuple[tuple[Scored, ...], tuple[str, ...]]:
        """(goods closest to `goods_id`, sources): by ALS item factors (cosine), or by name
        for goods nobody bought yet; filled with popular goods when `only` thins them."""
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        near = self._similar.get(goods_id, ())
        if not only.active:
            return near[:limit], ("similar",)
        found = only.keep(near, limit)
        sources = ("similar",)
        if len(found) < min(limit, len(near)):  # thinned by the filters: fill it
            fill = self._fill(limit - len(found), only,
                              frozenset([goods_id, *(g for g, _ in found)]))
            if fill:
                found, sources = found + fill, ("similar", "popular")
        return tuple(found), sources

    def associations(self, goods_id: str, limit: int = 10, min_confidence: float = 0.0,
                     sort: str = "confidence", collapse_variants: bool = False, *,
                     only: Filter = NO_FILTER) -> list[Rule]:
        """Rules "bought goods_id -> also bought ...", best first by `sort` (then support).

        `collapse_variants`: one rule per product whatever its colour or size (its best),
        and none to another colour or size of `goods_id` itself (`variant_key`). A rule any
        of whose consequent goods `only` refuses is left out."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {SORT_KEYS}")
        if not self.has_product(goods_id):
            raise UnknownProduct(goods_id)
        ranked = (r for r in self._assoc.get(goods_id, {}).get(sort, ())
                  if r.confidence >= min_confidence
                  and (not only.active or all(map(only.allows, r.consequent))))
        if collapse_variants:
            ranked = self._distinct_variants(goods_id, ranked)
        return list(itertools.islice(ranked, limit))

    def _distinct_variants(self, goods_id: str, rules):
        seen = {variant_key(self.name(goods_id)) or goods_id}
        for rule in rules:
            keys = {variant_key(self.name(g)) or g for g in rule.consequent}
            if not keys & seen:
                seen |= keys
                yield rule

    def basket(self, items: list[str], limit: int = 10, *, only: Filter = NO_FILTER
               ) -> tuple[list[Suggestion], tuple[str, ...]]:
        """(what to add to a cart holding `items`, sources), sources of SOURCES.

        Rules whose whole antecedent is in the cart and whose consequent is not, one entry
        per consequent goods (its best rule), best first by confidence, lift, support; the
        score is the confidence. When no rule fires: goods most similar to any cart item.
        Goods `only` refuses are skipped, and a short answer is filled with popular goods.
        Never the cart's own goods. Unknown ids are ignored (the model's catalog lags the
        shop's)."""
        cart = set(items)
        best: dict[str, Rule] = {}
        for rule in self._fired(cart):
            if cart.intersection(rule.consequent):
                continue
            for goods_id in rule.consequent:
                if goods_id not in best or _strength(rule) > _strength(best[goods_id]):
                    best[goods_id] = rule
        if best:
            ranked = sorted(best.items(), key=lambda kv: (*(-x for x in _strength(kv[1])),
                                                          kv[0]))
            found = [Suggestion(g, r.confidence, r.antecedent)
                     for g, r in only.keep(ranked, limit)]
            source = "rules"
        else:
            found, source = self._near_cart(cart, limit, only), "similar"
        sources = (source,) if found else ()
        if not found or (only.active and len(found) < limit):
            fill = self._fill(limit - len(found), only,
                              frozenset(cart.union(s.goods_id for s in found)))
            if fill:
                found += [Suggestion(g, s, ()) for g, s in fill]
                sources += ("popular",)
        return found, sources

    def _near_cart(self, cart: set[str], limit: int, only: Filter) -> list[Suggestion]:
        near: dict[str, tuple[float, str]] = {}
        for g in sorted(cart):
            for other, score in self._similar.get(g, ()):
                if other not in cart and score > near.get(other, (-2.0,))[0]:
                    near[other] = (score, g)
        ranked = sorted(near.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [Suggestion(g, s, (src,)) for g, (s, src) in only.keep(ranked, limit)]

    def find_products(self, text: str, limit: int = 20) -> list[tuple[str, str]]:
        """[(goods id, name)]: the id itself if it is one, else names containing `text`."""
        text = text.strip()
        if self.has_product(text):
            return [(text, self.name(text))]
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
            self.recommend("+70000000000", 10)
            index = self.snapshot.index
            for user in np.flatnonzero(np.diff(index.arrays["recs_start"]))[:1].tolist():
                key = index.users[user].decode()
                if not self._users.get(key):
                    raise SnapshotError(f"{self.version}: shopper {key[:8]}... has no recs")
            for goods_id in list(self._assoc)[:1] + [g for g, _ in self._popular[:1]]:
                self.associations(goods_id)
                self.similar(goods_id)
            self.basket([g for g, _ in self.snapshot.popular[:2]])
        except (LookupError, ValueError, TypeError) as exc:
            raise SnapshotError(f"{self.version}: self-check failed: {exc!r}") from exc


class _Ranked(Sequence):
    """Part of a shopper's precomputed list, read from the index: Scored are made only for
    the goods an answer reads (most answers read the first `limit`)."""

    __slots__ = ("goods", "positions", "scores")

    def __init__(self, goods: list[str], positions: np.ndarray, scores: np.ndarray):
        self.goods, self.positions, self.scores = goods, positions, scores

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        goods = self.goods
        if isinstance(i, slice):
            return tuple(Scored(goods[g], s) for g, s in zip(self.positions[i].tolist(),
                                                             self.scores[i].tolist()))
        return Scored(goods[int(self.positions[i])], float(self.scores[i]))

    def __iter__(self):
        goods = self.goods
        return (Scored(goods[g], s) for g, s in zip(self.positions.tolist(),
                                                    self.scores.tolist()))

    def where(self, mask: np.ndarray) -> _Ranked:
        return _Ranked(self.goods, self.positions[mask], self.scores[mask])


class _Lists:
    """shopper key -> (every rec, the recs not bought), read from the index when asked."""

    def __init__(self, arrays: ServingIndex):
        self.arrays = arrays

    def get(self, key: str) -> tuple[_Ranked, _Ranked] | None:
        user = self.arrays.user(key)
        if user is None:
            return None
        positions, scores, bought = self.arrays.recs(user)
        if not len(positions):
            return None
        new = ~bought
        goods = self.arrays.goods
        return _Ranked(goods, positions, scores), _Ranked(goods, positions[new], scores[new])


class _Bought:
    """shopper key -> every goods they bought."""

    def __init__(self, arrays: ServingIndex):
        self.arrays = arrays

    def get(self, key: str) -> frozenset[str] | None:
        user = self.arrays.user(key)
        if user is None:
            return None
        goods = self.arrays.goods
        return frozenset(goods[g] for g in self.arrays.bought(user).tolist())


class _Near:
    """goods -> its nearest goods, best first."""

    def __init__(self, arrays: ServingIndex):
        self.arrays = arrays

    def get(self, goods_id: str, default=()):
        near = self.arrays.similar(goods_id)
        return default if near is None else tuple(Scored(g, s) for g, s in near)


def _blend(personal: Sequence[Scored], context: dict[str, float]) -> list[Scored]:
    """A known shopper's list and the session's goods, each scaled to its best (1), then
    CONTEXT_WEIGHT of the session's and the rest of the shopper's; best first."""
    scores: dict[str, float] = {}
    if personal:
        peak = max(s for _, s in personal)
        for rank, (g, s) in enumerate(personal):
            # ALS scores may be negative: then the order, not the value, says how good
            value = s / peak if peak > 0 else 1.0 / (rank + 1)
            scores[g] = (1 - CONTEXT_WEIGHT) * max(value, 0.0)
        weight = CONTEXT_WEIGHT
    else:
        weight = 1.0
    top = max(context.values())
    for g, s in context.items():
        scores[g] = scores.get(g, 0.0) + weight * s / top
    return [Scored(g, s) for g, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def _strength(rule: Rule) -> tuple[float, float, float]:
    return rule.confidence, rule.lift, rule.support
