"""Synthetic shops shaped like UCI Online Retail, at any multiple of its volume.

`make bench-scale` needs the nightly pipeline's cost at 1x, 4x and 16x real data, and the
real file exists only once. This generator reproduces what drives the pipeline's cost,
measured on ../shared/data/online-retail (2010-12-01..2011-09-30, cancellations and
returns left out):

    invoices            14,876 over 304 days, none on Saturdays
    goods               3,764; the top 100 take 20% of the lines, the top 1,000 74%
    customers           3,616; 3.6 invoices each on average, a long tail (p99: 25)
    guest invoices      11.5%
    lines per invoice   median 14, mean 24, p90 49, p99 200 (up to 700)
    quantity per line   median 4

At scale s: s times the invoices and customers, sqrt(s) times the goods (catalogs grow
slower than their shops), and the same distributions. At 1x it writes 14,876 orders and
329k lines (per order: median 16, p90 47, p99 104; the real tail is longer). Shoppers
keep to a taste cluster of goods, as the demo generator's do, so ALS and the rules have
signal to find.

Days are written straight into landing/ in the extractor's layout (etl.bus.land_day): the
benchmark measures the pipeline after extraction. Generation is vectorized (numpy) a day
at a time, so 16x (238k orders, 5.7M lines) takes about a minute and little memory.

Run with: python -m simulation.scaler --scale 4 --warehouse var/scale/x4
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from etl.bus import land_day, land_goods
from simulation.generator import format_phone, normalized, zipf_weights

START, DAYS = dt.date(2010, 12, 1), 304
INVOICES, CUSTOMERS, GOODS = 14_876, 3_616, 3_764


@dataclass(frozen=True)
class Shape:
    """Online Retail's shape; see the module docstring for where each figure comes from."""

    scale: float = 1.0
    start: dt.date = START
    days: int = DAYS
    guest_rate: float = 0.115
    size_median: float = 17.0  # 14 lines after merging repeated picks of one goods
    size_sigma: float = 0.98  # lognormal: p90 = 14 * exp(1.2816 * 0.98) = 49
    max_size: int = 700
    zipf: float = 0.9
    taste_share: float = 0.6  # share of a shopper's lines from their taste cluster
    goods_per_cluster: int = 150
    seed: int = 7
    categories: int = 20  # the catalog's categories, goods spread evenly
    # a shop of another shape than a multiple of Online Retail: these counts as given
    n_orders: int | None = None
    n_shoppers: int | None = None
    n_goods: int | None = None

    @property
    def orders(self) -> int:
        return self.n_orders or round(INVOICES * self.scale)

    @property
    def shoppers(self) -> int:
        return self.n_shoppers or round(CUSTOMERS * self.scale)

    @property
    def goods(self) -> int:
        return self.n_goods or round(GOODS * math.sqrt(self.scale))

    @property
    def clusters(self) -> int:
        return max(4, round(25 * math.sqrt(self.scale)))


def _days(shape: Shape, rng: np.random.Generator) -> list[tuple[dt.date, int]]:
    """(day, orders) for every day of the period: none on Saturdays, like the real shop."""
    days = [shape.start + dt.timedelta(d) for d in range(shape.days)]
    weight = np.array([0.0 if d.weekday() == 5 else 1.0 for d in days])
    counts = rng.multinomial(shape.orders, weight / weight.sum())
    return list(zip(days, counts.tolist()))


def land(root: Path, shape: Shape, progress: bool = True) -> dict:
    """Write the shop into `root`/landing; return what was written."""
    rng = np.random.default_rng(shape.seed)
    goods_ids = np.array([f"{20_000 + i}" for i in range(shape.goods)])
    price = np.round(rng.lognormal(1.0, 0.8, shape.goods) + 0.1, 2).tolist()
    popularity = zipf_weights(shape.goods, shape.zipf)
    per_cluster = min(shape.goods_per_cluster, shape.goods)
    clusters = np.stack([rng.choice(shape.goods, per_cluster, replace=False, p=popularity)
                         for _ in range(shape.clusters)])
    in_cluster = zipf_weights(per_cluster, 0.8)
    phones = np.array([f"79{x:09d}" for x in rng.choice(10**9, shape.shoppers, replace=False)])
    taste = rng.integers(shape.clusters, size=shape.shoppers)
    activity = normalized(rng.lognormal(0, 1.2, shape.shoppers))

    next_id, lines_total = 500_000, 0
    days = _days(shape, rng)
    for day, n in tqdm(days, desc=f"scale {shape.scale:g}", unit="day", disable=not progress):
        sizes = np.clip(np.rint(rng.lognormal(math.log(shape.size_median), shape.size_sigma,
                                              n)), 1, shape.max_size).astype(int)
        who = rng.choice(shape.shoppers, n, p=activity)
        owner = np.repeat(who, sizes)
        order = np.repeat(np.arange(n), sizes)
        from_taste = rng.random(owner.size) < shape.taste_share
        picks = rng.choice(shape.goods, owner.size, p=popularity)
        slot = rng.choice(per_cluster, owner.size, p=in_cluster)
        picks[from_taste] = clusters[taste[owner[from_taste]], slot[from_taste]]
        # one line per (order, goods), in order
        pairs = np.unique(order.astype(np.int64) * shape.goods + picks)
        order, picks = pairs // shape.goods, pairs % shape.goods
        quantity = rng.geometric(0.22, picks.size)
        bounds = np.searchsorted(order, np.arange(n + 1))
        guest = rng.random(n) < shape.guest_rate
        style = rng.integers(4, size=n)
        seconds = np.sort(rng.integers(8 * 3600, 20 * 3600, n))
        out = []
        for i in range(n):
            lo, hi = bounds[i], bounds[i + 1]
            basket = ",".join(
                f'{{"goodsId":"{goods_ids[g]}","quantity":{q},"price":{price[g]}}}'
                for g, q in zip(picks[lo:hi].tolist(), quantity[lo:hi].tolist()))
            tel = "null" if guest[i] else json.dumps(format_phone(phones[who[i]], style[i]))
            when = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(seconds[i]))
            out.append(f'{{"id":{next_id + i},"date":"{when.isoformat()}","clientTel":{tel},'
                       f'"basket":[{basket}]}}\n')
        next_id += n
        lines_total += picks.size
        land_day(root, day, "".join(out).encode())
    end = days[-1][0]
    land_goods(root, end, [{"id": g, "name": f"Goods {g}",
                            "category": f"Category {i % shape.categories + 1:02d}"}
                           for i, g in enumerate(goods_ids.tolist())])
    return {"scale": shape.scale, "orders": next_id - 500_000, "lines": int(lines_total),
            "shoppers": shape.shoppers, "goods": shape.goods, "start": shape.start.isoformat(),
            "end": end.isoformat()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of Online Retail")
    parser.add_argument("--warehouse", type=Path, required=True, help="warehouse root to fill")
    parser.add_argument("--seed", type=int, default=Shape.seed)
    args = parser.parse_args()
    print(json.dumps(land(args.warehouse, Shape(scale=args.scale, seed=args.seed))))


if __name__ == "__main__":
    main()
