"""Simulated shoppers who see the recommendations and act on them: the loop, closed.

Each visit is one shopper of the generated shop opening the storefront: the storefront asks
the running service for their recommendations (an impression, in the shopper's A/B arm,
which the service decides); with `click_rate` the shopper clicks one of the goods shown
(POST /events), and with `buy_rate`, plus the planted `uplift` of their arm, plus
`taste_rate` times the share of the goods shown that they like (their tastes: the
generator's truth), buys one of them: the order goes to the bus simulator (POST /orders)
dated now, so the next night lands it and the attribution (experiments/attribution.py)
finds it. Planting an uplift in one arm is how a test knows the answer the attribution must
find; planting none is the A/A test; tastes let an arm earn its uplift by what it shows.

Every draw comes from a generator seeded by (seed, visit), so a run is the same whatever
the threads' order; `Visits` is the ground truth to compare the attribution with.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
import requests


@dataclass(frozen=True)
class Behaviour:
    """How simulated shoppers act on what they are shown."""

    click_rate: float = 0.3  # a visit clicks one of the goods shown
    buy_rate: float = 0.05  # a visit buys one of the goods shown ...
    uplift: Mapping[str, float] = field(default_factory=dict)  # ... plus this, by arm
    limit: int = 10  # goods asked for
    seed: int = 0
    # Shoppers with tastes (phone -> the goods they like, the generator's truth) buy by
    # them: `taste_rate` more times the share of the goods shown that they like, and one of
    # those. An arm that shows shoppers what they like earns its uplift; none is planted.
    tastes: Mapping[str, frozenset] = field(default_factory=dict)
    taste_rate: float = 0.0


@dataclass
class Visits:
    """What the shoppers did, per arm: the ground truth of the attribution."""

    visits: collections.Counter = field(default_factory=collections.Counter)
    clicks: collections.Counter = field(default_factory=collections.Counter)
    buyers: collections.Counter = field(default_factory=collections.Counter)
    revenue: collections.Counter = field(default_factory=collections.Counter)
    failed: int = 0


def parse_uplift(text: str) -> dict[str, float]:
    """"b=0.1,c=0.05" -> {"b": 0.1, "c": 0.05}."""
    found = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        arm, _, value = part.partition("=")
        try:
            found[arm.strip()] = float(value)
        except ValueError:
            raise ValueError(f"uplift {part!r}: write arm=probability, e.g. b=0.1") from None
    return found


def visit_all(service: str, bus: str, auth: tuple[str, str], phones: Sequence[str],
              prices: Mapping, behaviour: Behaviour = Behaviour(), workers: int = 8,
              progress=None) -> Visits:
    """One visit per phone, `workers` at a time; returns what they did."""
    done = Visits()
    lock = threading.Lock()
    local = threading.local()

    def one(n: int, phone: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        rng = np.random.default_rng([behaviour.seed, n])
        click, buy = rng.random(), rng.random()
        try:
            resp = session.get(f"{service}/users/{quote(phone)}/recommendations",
                               params={"limit": behaviour.limit}, timeout=10)
            resp.raise_for_status()
        except requests.RequestException:
            with lock:
                done.failed += 1
            return
        shown = [item["goodsId"] for item in resp.json()]
        arm = resp.headers.get("X-Experiment-Arm", "")
        rec_id = resp.headers["X-Recommendation-Id"]
        clicked = bought = None
        if shown and click < behaviour.click_rate:
            clicked = shown[int(rng.integers(len(shown)))]
            session.post(f"{service}/events", timeout=10, json={"events": [{
                "eventId": f"sim-{behaviour.seed}-{n}", "type": "click",
                "recommendationId": rec_id, "goodsId": clicked}]}).raise_for_status()
        liked = [g for g in shown if g in behaviour.tastes.get(phone, ())]
        chance = behaviour.buy_rate + behaviour.uplift.get(arm, 0.0) + (
            behaviour.taste_rate * len(liked) / len(shown) if shown else 0.0)
        if shown and buy < chance:
            pick = liked or ([clicked] if clicked is not None else shown)
            bought = pick[int(rng.integers(len(pick)))]
            price = float(prices.get(bought, 1.0))
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            session.post(f"{bus}/orders", auth=auth, timeout=10, json={
                "id": f"sim-{behaviour.seed}-{n}", "date": now.isoformat(timespec="seconds"),
                "clientTel": phone,
                "basket": [{"goodsId": bought, "quantity": 1, "price": price}]}
            ).raise_for_status()
        with lock:
            done.visits[arm] += 1
            done.clicks[arm] += clicked is not None
            done.buyers[arm] += bought is not None
            done.revenue[arm] += 0.0 if bought is None else float(prices.get(bought, 1.0))
        if progress is not None:
            progress()

    with ThreadPoolExecutor(workers, thread_name_prefix="shopper") as pool:
        for future in [pool.submit(one, n, phone) for n, phone in enumerate(phones)]:
            future.result()
    return done


def shop_rounds(service: str, bus: str, auth: tuple[str, str], orders: list[dict],
                goods: list[dict], visits: int, every: float, behaviour: Behaviour):
    """`shoprecs simulator --shoppers URL`: in a daemon thread, every `every` seconds,
    `visits` shoppers of `orders` (drawn anew each round) visit the service; one line per
    round. Returns the thread."""
    log = logging.getLogger(__name__)
    phones = sorted({o["clientTel"] for o in orders if o.get("clientTel")})
    prices = {g["id"]: g.get("price", 1.0) for g in goods}

    def run() -> None:
        for n in itertools.count():
            time.sleep(every if n else 2.0)  # the first round once the bus listens
            rng = np.random.default_rng([behaviour.seed, n, 1])
            chosen = [phones[i] for i in rng.choice(len(phones), min(visits, len(phones)),
                                                    replace=False)]
            done = visit_all(service, bus, auth, chosen, prices,
                             dataclasses.replace(behaviour, seed=behaviour.seed * 100_003 + n))
            log.info("shoppers round %d: visits %s, clicks %s, bought %s, failed %d", n,
                     dict(done.visits), dict(done.clicks), dict(done.buyers), done.failed)

    thread = threading.Thread(target=run, name="shoppers", daemon=True)
    thread.start()
    return thread
