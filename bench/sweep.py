"""How much history should a night use? The training window and the repeat half-life, swept.

Two shops: UCI Online Retail (on bench-quality's validation split, so that its test stays
unseen: train before 2011-06-01, test 2011-06-01..2011-07-31) and the generated default
shop over 180 days (test: its last 14).
For each setting, the night's own holdout evaluation (models/train.evaluate_holdout) with
the default configuration otherwise: the fits (ALS, item neighbours, trending) on the
window before the cut, each shopper's own signals on the whole history before it, every
candidate measured and the published one chosen as a night chooses it. First the window
(30, 90, 180, 365 days, all) at the default half-life, then the half-life of a repeat
purchase (30, 90, 180, 365 days, never) and the item-kNN's neighbours per goods (20, 50,
100) at the default window.

Prints one table per shop: MAP@10 of the configured hybrid and of what would be
published, all purchases and new goods. Figures in bench/RESULTS.md.

Run with: make bench-sweep   (or: .venv/bin/python -m bench.sweep [--shops retail demo])
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time

from bench.retail_data import ROOT

WINDOWS = (30, 90, 180, 365, None)  # None: all history
HALF_LIVES = (30.0, 90.0, 180.0, 365.0, 1e9)  # 1e9: a purchase never counts less
NEIGHBOURS = (20, 50, 100)
OUT = ROOT / "var" / "bench" / "sweep"
DEFAULT_WINDOW = 90  # core.config.Settings.train.window_days, asserted in main()


def demo_shop(spark):
    """The default generated shop over 180 days, landed and cleaned into its warehouse."""
    import pipeline
    from core.config import Settings
    from shoprecs.demo import free_port, start_simulator
    from simulation.generator import profile

    shop = profile("default", days=180, orders=40_000)
    root = OUT / "demo"
    end = shop.start + dt.timedelta(days=shop.days - 1)
    settings = Settings().replace(warehouse_root=str(root),
                                   bus_url=f"http://127.0.0.1:{free_port()}",
                                   privacy_hmac_key="bench-sweep", bus_per_page=1000)
    if not (root / "_PREPARED").exists():
        from simulation.generator import generate

        orders, goods, _ = generate(shop)
        simulator = start_simulator(orders, goods, settings)
        try:
            pipeline.extract(settings, shop.start, end)
        finally:
            simulator.stop()
        pipeline.clean(settings, shop.start, end, spark)
        (root / "_PREPARED").write_text("")
    return root, shop.start, end - dt.timedelta(days=13), end


def retail_shop(spark):
    from bench import quality, retail_data

    retail_data.prepare(spark)
    return retail_data.WAREHOUSE, retail_data.START, quality.VAL_CUT, quality.VAL_END


def evaluate(spark, root, first, cut, end, window, params) -> dict:
    from etl.clean import read_clean
    from models import als, ids
    from models.train import evaluate_holdout

    start = first if window is None else max(first, cut - dt.timedelta(days=window))
    lines = read_clean(spark, root, start, end).cache()
    history = read_clean(spark, root, None, end).cache()
    users = ids.extend(None, history.select("user_key")).cache()
    items = ids.extend(None, history.select("goods_id")).cache()
    try:
        result = evaluate_holdout(lines, users, items, cut, als.ALSParams(), params, 10,
                                  end=end, history=history)
    finally:
        for df in (lines, history, users, items):
            df.unpersist()
    chosen = result["selection"]
    models = result["models"]
    return {"users": result["test_users"], "published": chosen["published"],
            "rebuy": chosen["rebuy"],
            "hybrid": {m: models["hybrid"][m]["map"] for m in ("all", "new")},
            "chosen": {m: models[chosen["published"]][m]["map"] for m in ("all", "new")}}


def sweep(spark, name, shop) -> list[dict]:
    from models.hybrid import HybridParams

    root, first, cut, end = shop
    default = HybridParams()
    settings = [("window", w, dataclasses.replace(default)) for w in WINDOWS]
    settings += [("half-life", h, dataclasses.replace(default, repeat_half_life=h))
                 for h in HALF_LIVES if h != default.repeat_half_life]
    settings += [("neighbours", n, dataclasses.replace(default, neighbours=n))
                 for n in NEIGHBOURS if n != default.neighbours]
    rows = []
    for n, (kind, value, params) in enumerate(settings, 1):
        window = value if kind == "window" else DEFAULT_WINDOW
        started = time.perf_counter()
        row = {"shop": name, "kind": kind, "value": value,
               **evaluate(spark, root, first, cut, end, window, params),
               "seconds": round(time.perf_counter() - started)}
        rows.append(row)
        print(f"[{name} {n}/{len(settings)}] {kind} {value}: {row}", flush=True)
    return rows


def report(rows: list[dict]) -> None:
    print("\n| shop | setting | test shoppers | hybrid MAP@10 all / new | published "
          "(rebuy) | its MAP@10 all / new |\n|---|---|---:|---:|---|---:|")
    for r in rows:
        if r["kind"] == "window":
            setting = f"window {'all' if r['value'] is None else str(r['value']) + ' days'}"
        elif r["kind"] == "half-life":
            value = "never" if r["value"] >= 1e9 else f"{r['value']:g} days"
            setting = f"repeat half-life {value} (window {DEFAULT_WINDOW})"
        else:
            setting = f"{r['value']} neighbours per goods (window {DEFAULT_WINDOW})"

        print(f"| {r['shop']} | {setting} | {r['users']} | {r['hybrid']['all']:.4f} / "
              f"{r['hybrid']['new']:.4f} | {r['published']} ({r['rebuy']:g}) | "
              f"{r['chosen']['all']:.4f} / {r['chosen']['new']:.4f} |")


def main() -> None:
    from core.config import Settings
    from pipeline.spark import get_spark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shops", nargs="*", default=["retail", "demo"])
    args = parser.parse_args()
    assert Settings().train_window_days == DEFAULT_WINDOW, "update DEFAULT_WINDOW"
    spark = get_spark("bench-sweep")
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    for name in args.shops:
        shop = retail_shop(spark) if name == "retail" else demo_shop(spark)
        rows += sweep(spark, name, shop)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    report(rows)


if __name__ == "__main__":
    main()
