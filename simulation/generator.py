"""Seeded synthetic orders with real signal for both models, in shops of several kinds.

The shop has a long-tail catalog (Zipf popularity), shoppers who each belong to one taste
cluster (most of their picks come from that cluster's items) and bundles of two or three
goods that are bought together. ALS should find the clusters, FP-Growth the bundles; the
returned `Truth` says which is which so tests and the demo can check.

`PROFILES` names shops unlike the default one, each a few settings away from it: a tiny
shop, one whose shoppers never buy a product twice (books, media), a long-tail catalog, a
strongly seasonal shop and one of mostly guest orders. `profile(name, scale)` gives one,
shrunk or grown by `scale` for tests and benchmarks.

Run with: shoprecs simulator --profile no_repeat   (or: shoprecs demo --profile)
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from simulation.profiles import PROFILES

_ADJECTIVES = ["Blue", "Red", "Vintage", "Rustic", "Glass", "Ceramic", "Wooden", "Silver",
               "Paper", "Linen", "Enamel", "Pastel", "Gold", "Woven", "Floral", "Retro"]
CATEGORIES = ["Kitchen", "Garden", "Living Room", "Stationery", "Gifts", "Lighting", "Textiles",
              "Party", "Bathroom", "Kids", "Storage", "Decor"]
_NOUNS = ["Mug", "Candle Holder", "Lantern", "Tea Towel", "Cake Stand", "Photo Frame",
          "Jam Jar", "Doorstop", "Bunting", "Tin", "Cushion", "Clock", "Notebook",
          "Lunch Bag", "Vase", "Coaster Set", "Wall Sign", "Trinket Box", "Bell", "Apron"]


@dataclass(frozen=True)
class GeneratorParams:
    """Shape of the generated shop. Defaults give the demo: 30 days, 20k orders."""

    start: dt.date = dt.date(2024, 1, 1)
    days: int = 30
    orders: int = 20_000
    shoppers: int = 3_000
    goods: int = 1_000
    clusters: int = 8
    items_per_cluster: int = 60
    bundles: int = 30
    bundle_rate: float = 0.3  # share of orders that contain a bundle
    taste_share: float = 0.85  # share of picks from the shopper's own cluster
    guest_rate: float = 0.05  # orders without a phone
    popularity_exponent: float = 1.1  # Zipf: the i-th best seller sells like 1 / i**this
    # False: a shopper never buys a goods twice (books, media); picks already bought by the
    # shopper are drawn again.
    repeat_purchases: bool = True
    # > 0: each goods' demand peaks once, on a day drawn at random, and falls off as a
    # bell curve of this many weeks' standard deviation (to `season_floor` of its peak).
    season_weeks: float = 0.0
    season_floor: float = 0.02
    # The catalog's shop fields: each goods' category (its taste cluster's, else one by id)
    # and a share of goods out of stock (`available: false`), drawn from a stream of their
    # own so that the orders stay what they were.
    unavailable_share: float = 0.02
    # > 0: the company sells through this many sites and stores; each order carries the
    # `source` it came from (drawn from a stream of its own: the orders stay what they were).
    sources: int = 0
    seed: int = 42

    def scaled(self, scale: float) -> GeneratorParams:
        """The same shop with `scale` times the orders, shoppers and goods (clusters keep
        their share of the catalog); days and rates unchanged."""
        def times(n: int, least: int) -> int:
            return max(least, round(n * scale))

        goods = times(self.goods, 20)
        return dataclasses.replace(
            self, orders=times(self.orders, 50), shoppers=times(self.shoppers, 20),
            goods=goods, items_per_cluster=max(3, min(goods // self.clusters,
                                                      times(self.items_per_cluster, 3))),
            bundles=max(1, min(self.bundles, goods // 8)))


def profile(name: str, scale: float = 1.0, **overrides) -> GeneratorParams:
    """The shop `name` of PROFILES, `scale` times its size, with `overrides` not None applied."""
    if name not in PROFILES:
        raise ValueError(f"unknown shop profile {name!r}: one of {', '.join(PROFILES)}")
    params = GeneratorParams(**PROFILES[name])
    if scale != 1.0:
        params = params.scaled(scale)
    return dataclasses.replace(params, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Truth:
    """What the generator planted: for tests and the demo's explanations."""

    cluster_of: dict[str, int] = field(default_factory=dict)  # normalized phone -> cluster
    cluster_items: list[list[int]] = field(default_factory=list)
    bundles: list[tuple[int, ...]] = field(default_factory=list)


def format_phone(digits: str, style: int) -> str:
    """One of the four formats the bus uses for the 11-digit number `digits` (7XXXXXXXXXX)."""
    n = digits[1:]
    if style == 0:
        return f"+7({n[:3]}){n[3:6]}-{n[6:]}"
    if style == 1:
        return f"+7 ({n[:3]}) {n[3:6]}-{n[6:]}"
    if style == 2:
        return digits
    return "8" + n


def _catalog(rng: np.random.Generator, p: GeneratorParams) -> list[dict]:
    return [{"id": 10_000 + i,
             "name": f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[i % len(_NOUNS)]} {i}",
             "price": round(float(rng.uniform(0.5, 20)), 2)} for i in range(p.goods)]


class _Demand:
    """Popularity over the catalog and within each taste cluster, by day when seasonal."""

    def __init__(self, rng: np.random.Generator, p: GeneratorParams, truth: Truth,
                 ids: np.ndarray):
        self.p, self.truth, self.ids = p, truth, ids
        self.popularity = zipf_weights(p.goods, p.popularity_exponent)
        self.in_cluster = zipf_weights(p.items_per_cluster, 0.8)
        self._day = -1
        # drawn last: the default's stream
        self.peak = rng.uniform(0, p.days, p.goods) if p.season_weeks > 0 else None
        self.catalog_p, self.cluster_p = self.popularity, [self.in_cluster] * p.clusters

    def on(self, day: int) -> None:
        """Demand on `day` (a no-op unless the shop is seasonal)."""
        if self.peak is None or day == self._day:
            return
        self._day = day
        width = self.p.season_weeks * 7
        season = self.p.season_floor + np.exp(-0.5 * ((day - self.peak) / width) ** 2)
        self.catalog_p = normalized(self.popularity * season)
        self.cluster_p = [normalized(self.in_cluster * season[np.searchsorted(self.ids, items)])
                          for items in self.truth.cluster_items]  # ids are sorted

    def pick(self, rng: np.random.Generator, cluster: int) -> int:
        if rng.random() < self.p.taste_share:
            taste = self.truth.cluster_items[cluster]
            return taste[rng.choice(self.p.items_per_cluster, p=self.cluster_p[cluster])]
        return int(rng.choice(self.ids, p=self.catalog_p))


def normalized(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Shares of n ranks that sum to 1, the i-th like 1 / i**exponent."""
    return normalized(1.0 / np.arange(1, n + 1) ** exponent)


_REDRAWS = 20  # a shop without re-buys draws again this often before giving up a pick


def generate(p: GeneratorParams = GeneratorParams()) -> tuple[list[dict], list[dict], Truth]:
    """(orders in bus format sorted by date, goods catalog, planted truth)."""
    rng = np.random.default_rng(p.seed)
    goods = _catalog(rng, p)
    ids = np.array([g["id"] for g in goods])
    price = {g["id"]: g["price"] for g in goods}
    truth = Truth()
    popularity = zipf_weights(p.goods, p.popularity_exponent)
    truth.cluster_items = [
        rng.choice(ids, p.items_per_cluster, replace=False, p=popularity).tolist()
        for _ in range(p.clusters)]
    truth.bundles = [tuple(rng.choice(ids[: p.goods // 2], 2 + int(rng.random() < 0.3),
                                      replace=False).tolist()) for _ in range(p.bundles)]
    phones = rng.choice(10**9, size=p.shoppers, replace=False)
    shoppers = [f"79{x:09d}" for x in phones]
    clusters = rng.integers(p.clusters, size=p.shoppers)
    truth.cluster_of = {s: int(c) for s, c in zip(shoppers, clusters)}
    activity = normalized(rng.lognormal(0, 1, p.shoppers))
    start = dt.datetime.combine(p.start, dt.time())
    seconds = np.sort(rng.integers(p.days * 86_400, size=p.orders))
    demand = _Demand(rng, p, truth, ids)
    owned: dict[int, set[int]] = {}  # what each shopper bought, when they never re-buy
    orders = []
    for n, offset in enumerate(seconds):
        demand.on(int(offset) // 86_400)
        who = int(rng.choice(p.shoppers, p=activity))
        mine = owned.setdefault(who, set()) if not p.repeat_purchases else None
        picks: list[int] = []
        for _ in range(1 + rng.poisson(1.5)):
            pick = demand.pick(rng, clusters[who])
            for _ in range(_REDRAWS if mine is not None else 0):
                if pick not in mine:
                    break
                pick = demand.pick(rng, clusters[who])
            picks.append(pick)
        if rng.random() < p.bundle_rate:
            picks.extend(truth.bundles[rng.integers(p.bundles)])
        if mine is not None:
            picks = [g for g in picks if g not in mine]
            mine.update(picks)
        basket = [{"goodsId": g, "quantity": int(1 + rng.poisson(0.5)), "price": price[g]}
                  for g in dict.fromkeys(picks)]
        guest = rng.random() < p.guest_rate
        if not basket:  # a shop without re-buys: everything drawn was owned already
            continue
        orders.append({
            "id": 100_000 + n,
            "date": (start + dt.timedelta(seconds=int(offset))).isoformat(),
            "clientTel": None if guest else format_phone(shoppers[who], int(rng.integers(4))),
            "basket": basket,
        })
    if p.sources:
        where = np.random.default_rng([p.seed, 2]).integers(p.sources, size=len(orders))
        for order, n in zip(orders, where, strict=True):
            order["source"] = "site" if n == 0 else f"store-{int(n)}"
    return orders, shop_catalog(goods, truth, p), truth


def shop_catalog(goods: list[dict], truth: Truth, p: GeneratorParams) -> list[dict]:
    """The bus's /goods: id, name, price, category (the goods' first taste cluster's;
    other goods one by id) and `available` (false for `unavailable_share` of them)."""
    category = {}
    for c, members in enumerate(truth.cluster_items):
        for g in members:
            category.setdefault(g, CATEGORIES[c % len(CATEGORIES)])
    rng = np.random.default_rng([p.seed, 1])
    out_of_stock = rng.random(len(goods)) < p.unavailable_share
    return [{"id": g["id"], "name": g["name"], "price": g["price"],
             "category": category.get(g["id"], CATEGORIES[g["id"] % len(CATEGORIES)]),
             "available": not bool(gone)} for g, gone in zip(goods, out_of_stock)]
