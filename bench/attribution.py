"""`make bench-attribution`: is the nightly attribution's A/B test right as often as it says?

Simulates many experiments at the demo's traffic (`shoprecs demo`: every shopper of its
3,000 visits the storefront once, and buys one of the goods shown with 5 %) and runs the
real attribution job (experiments/attribution.py, Spark) over all of them in one night:

* `--experiments` A/A tests: both arms buy at `--rate`. The share found significant at
  alpha = 0.05 is the false-positive rate (it should be near 5 %: 3-7 % with 200 tests);
* as many A/B tests whose arm b buys at `--rate` x (1 + `--uplift`) (+10 % relative by
  default): the share found significant is the power to find that uplift at this traffic.

Each experiment has shoppers of its own, each shown one impression (in arm a or b, half
each) of goods of their own; a buyer's order (one line of a goods shown, a minute later)
lands in clean/orders. The impressions and orders are written in the formats the service
(engine/events.py) and the cleaning job write, so the job reads them as it reads a night.
Also printed: the shoppers per arm that 80 % power needs for this uplift, by the same
normal approximation the job's test uses; `--shoppers` runs the simulation at another size.

Run with: make bench-attribution   (or: .venv/bin/python -m bench.attribution --shoppers 3000)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.retail_data import ROOT

OUT = ROOT / "var" / "bench" / "attribution"
DAY = dt.date(2026, 12, 1)
ALPHA = 0.05


def write_night(root, experiments: int, shoppers: int, rate: float, uplift: float,
                seed: int) -> dict[str, float]:
    """Impressions and orders of every experiment; returns each experiment's true b rate."""
    rng = np.random.default_rng(seed)
    folder = root / "events" / "impressions" / f"dt={DAY}" / "hour=10"
    folder.mkdir(parents=True)
    orders = {"order_id": [], "order_ts": [], "user_key": [], "goods_id": [],
              "quantity": [], "price": []}
    truth = {}
    shown_at = dt.datetime.combine(DAY, dt.time(10), dt.UTC)
    with open(folder / "part-bench.jsonl", "w") as out:
        for kind, lift in (("aa", 0.0), ("ab", uplift)):
            for n in range(experiments):
                name = f"{kind}{n:04d}"
                truth[name] = rate * (1 + lift)
                arm_b = rng.random(shoppers) < 0.5
                buys = rng.random(shoppers) < np.where(arm_b, rate * (1 + lift), rate)
                for i in range(shoppers):
                    shopper, goods = f"{name}-s{i}", f"{name}-g{i}"
                    arm = "b" if arm_b[i] else "a"
                    out.write(json.dumps({
                        "id": f"{name}-r{i}", "time": f"{DAY}T10:00:00.000Z",
                        "shopper": shopper, "route": "recommendations", "version": "v",
                        "experiment": name, "arm": arm, "variant": "model",
                        "sources": ["personalized"], "goods": [goods]}) + "\n")
                    if buys[i]:
                        orders["order_id"].append(f"{name}-o{i}")
                        orders["order_ts"].append(shown_at + dt.timedelta(minutes=1))
                        orders["user_key"].append(shopper)
                        orders["goods_id"].append(goods)
                        orders["quantity"].append(1)
                        orders["price"].append(10.0)
    table = pa.table({**orders, "source": [None] * len(orders["order_id"]),
                      "name": [None] * len(orders["order_id"])})
    table = table.cast(pa.schema([
        ("order_id", pa.string()), ("order_ts", pa.timestamp("us", tz="UTC")),
        ("user_key", pa.string()),
        ("goods_id", pa.string()), ("quantity", pa.int32()), ("price", pa.float64()),
        ("source", pa.string()), ("name", pa.string())]))
    part = root / "clean" / "orders" / f"dt={DAY}"
    part.mkdir(parents=True)
    pq.write_table(table, part / "part-bench.parquet")
    return truth


def needed_per_arm(rate: float, uplift: float, power: float = 0.8) -> int:
    """Shoppers per arm for `power` at ALPHA, two-sided (normal approximation)."""
    z = statistics.NormalDist()
    p0, p1 = rate, rate * (1 + uplift)
    spread = (z.inv_cdf(1 - ALPHA / 2) + z.inv_cdf(power)) ** 2
    return int(np.ceil(spread * (p0 * (1 - p0) + p1 * (1 - p1)) / (p1 - p0) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=200, help="A/A tests, and as many A/B")
    ap.add_argument("--shoppers", type=int, default=3000, help="per experiment (both arms)")
    ap.add_argument("--rate", type=float, default=0.05, help="conversion of arm a")
    ap.add_argument("--uplift", type=float, default=0.10, help="arm b's, relative")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from core.config import Settings
    from experiments import attribution
    from pipeline.spark import spark_session

    shutil.rmtree(OUT, ignore_errors=True)
    root = OUT / "warehouse"
    started = time.perf_counter()
    truth = write_night(root, args.experiments, args.shoppers, args.rate, args.uplift,
                        args.seed)
    print(f"{2 * args.experiments} experiments of {args.shoppers} shoppers written in "
          f"{time.perf_counter() - started:.0f} s; attributing (Spark) ...", flush=True)
    settings = Settings().replace(warehouse_root=str(root), attribution_days=1)
    started = time.perf_counter()
    with spark_session("bench-attribution") as spark:
        report = attribution.run(spark, settings, DAY)
    seconds = time.perf_counter() - started
    found = {e["name"]: e["comparisons"][0] for e in report["experiments"]}
    assert len(found) == len(truth), "an experiment is missing from the report"
    aa = [found[n]["significant"] for n in found if n.startswith("aa")]
    ab = [found[n]["significant"] for n in found if n.startswith("ab")]
    covered = [found[n]["conversion_difference"]["low"] <= truth[n] - args.rate
               <= found[n]["conversion_difference"]["high"] for n in found]
    per_arm = args.shoppers // 2
    need = needed_per_arm(args.rate, args.uplift)
    result = {"experiments": len(found), "shoppers": args.shoppers, "rate": args.rate,
              "uplift": args.uplift, "false_positive_rate": sum(aa) / len(aa),
              "power": sum(ab) / len(ab), "interval_coverage": sum(covered) / len(covered),
              "needed_per_arm_for_80": need, "attribution_seconds": round(seconds, 1)}
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    print(f"\nbench-attribution: {len(aa)} A/A and {len(ab)} A/B tests, {per_arm:,} shoppers "
          f"per arm, conversion {args.rate:.1%} (b: +{args.uplift:.0%} relative), alpha "
          f"{ALPHA}; the attribution job took {seconds:.0f} s")
    print(f"  false positives (A/A found significant): {result['false_positive_rate']:.1%} "
          "(expected 3-7 %)")
    print(f"  power (A/B found significant): {result['power']:.1%} at {per_arm:,} per arm; "
          f"80 % needs {need:,} shoppers per arm")
    print(f"  the 95 % intervals held the true difference in "
          f"{result['interval_coverage']:.1%} of the {len(covered)} tests")


if __name__ == "__main__":
    main()
