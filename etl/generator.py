"""Seeded synthetic orders with real signal for both models.

The shop has a long-tail catalog (Zipf popularity), shoppers who each belong to one taste
cluster (most of their picks come from that cluster's items) and bundles of two or three
goods that are bought together. ALS should find the clusters, FP-Growth the bundles; the
returned `Truth` says which is which so tests and the demo can check.

Run with: shoprecs simulator --generate --days 30 --orders 20000
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

_ADJECTIVES = ["Blue", "Red", "Vintage", "Rustic", "Glass", "Ceramic", "Wooden", "Silver",
               "Paper", "Linen", "Enamel", "Pastel", "Gold", "Woven", "Floral", "Retro"]
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
    seed: int = 42


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
    goods = []
    for i in range(p.goods):
        name = f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[i % len(_NOUNS)]} {i}"
        price = round(float(rng.uniform(0.5, 20)), 2)
        goods.append({"id": 10_000 + i, "name": name, "price": price})
    return goods


def generate(p: GeneratorParams = GeneratorParams()) -> tuple[list[dict], list[dict], Truth]:
    """(orders in bus format sorted by date, goods catalog, planted truth)."""
    rng = np.random.default_rng(p.seed)
    goods = _catalog(rng, p)
    ids = np.array([g["id"] for g in goods])
    price = {g["id"]: g["price"] for g in goods}
    popularity = 1.0 / np.arange(1, p.goods + 1) ** 1.1
    popularity /= popularity.sum()
    truth = Truth()
    for _ in range(p.clusters):
        members = rng.choice(ids, size=p.items_per_cluster, replace=False, p=popularity)
        truth.cluster_items.append([int(x) for x in members])
    for _ in range(p.bundles):
        size = 2 + int(rng.random() < 0.3)
        members = rng.choice(ids[: p.goods // 2], size, replace=False)
        truth.bundles.append(tuple(int(x) for x in members))
    phones = rng.choice(10**9, size=p.shoppers, replace=False)
    shoppers = [f"79{x:09d}" for x in phones]
    clusters = rng.integers(p.clusters, size=p.shoppers)
    truth.cluster_of = {s: int(c) for s, c in zip(shoppers, clusters)}
    activity = rng.lognormal(0, 1, p.shoppers)
    activity /= activity.sum()
    in_cluster = 1.0 / np.arange(1, p.items_per_cluster + 1) ** 0.8
    in_cluster /= in_cluster.sum()
    start = dt.datetime.combine(p.start, dt.time())
    seconds = np.sort(rng.integers(p.days * 86_400, size=p.orders))
    orders = []
    for n, offset in enumerate(seconds):
        who = int(rng.choice(p.shoppers, p=activity))
        picks: list[int] = []
        for _ in range(1 + rng.poisson(1.5)):
            if rng.random() < p.taste_share:
                taste = truth.cluster_items[clusters[who]]
                picks.append(taste[rng.choice(p.items_per_cluster, p=in_cluster)])
            else:
                picks.append(int(rng.choice(ids, p=popularity)))
        if rng.random() < p.bundle_rate:
            picks.extend(truth.bundles[rng.integers(p.bundles)])
        basket = [{"goodsId": g, "quantity": int(1 + rng.poisson(0.5)), "price": price[g]}
                  for g in dict.fromkeys(picks)]
        guest = rng.random() < p.guest_rate
        orders.append({
            "id": 100_000 + n,
            "date": (start + dt.timedelta(seconds=int(offset))).isoformat(),
            "clientTel": None if guest else format_phone(shoppers[who], int(rng.integers(4))),
            "basket": basket,
        })
    return orders, [{"id": g["id"], "name": g["name"]} for g in goods], truth
