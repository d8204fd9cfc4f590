"""The default night on every kind of generated shop: what it publishes, and how well.

For each profile of simulation.generator.PROFILES (full size unless --scale), a fresh warehouse
under var/bench/profiles/<name>, the bus simulator, and `shoprecs run` over all its days
with the default settings. Printed per shop:

* the night's outcome: published, or the quality gate's verdict;
* which candidate the holdout chose (models/selection.py), at which `rebuy`;
* holdout MAP@10, all purchases and new goods, of what was published, of popularity and
  of "most bought in the last 30 days" (recent_popularity), from the version's
  metrics.json (every candidate's figures are in var/bench/profiles/results.json);
* the strongest simple references (bench/references.py: EASE^R, RP3beta, personal
  decayed top-frequency, recent popularity, and all-time popularity), each tuned on the
  holdout-long window before the night's holdout and measured on that holdout with the
  night's evaluator; the best per mode, and whether the night is within the holdout's 95%
  interval of it (MAP@10, all purchases: the night's published candidate's interval
  over the test shoppers, as models/selection.py records it);
* the shop's repeat rate (share of purchases that buy a goods again);
* through the engine, as the API answers: the share of the top 10 that the shopper had
  already bought (per the generated orders, not the model's flag), with and without
  `exclude_bought`, over every shopper the model knows.

Run with: make bench-profiles   (or: .venv/bin/python -m bench.profiles --scale 0.5)
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict

from bench.retail_data import ROOT

OUT = ROOT / "var" / "bench" / "profiles"
MODELS = ("popularity", "hybrid", "recent_popularity", "latest_popularity", "als", "item_knn")


def bought_share(night, settings) -> dict[str, float]:
    """Share of the served top-10 slots holding goods the shopper bought before, per mode."""
    from core.phones import normalize
    from engine import RecommendationEngine

    engine = RecommendationEngine.from_warehouse(settings.root,
                                                 hmac_key=settings.privacy.hmac_key)
    owned: dict[str, set] = defaultdict(set)
    for order in night.orders:
        if order["clientTel"]:
            owned[normalize(order["clientTel"])].update(str(x["goodsId"]) for x in order["basket"])
    share = {}
    for mode, exclude in (("all", False), ("new", True)):
        slots = hits = 0
        for phone, goods in owned.items():
            recs, sources = engine.recommend(phone, 10, exclude_bought=exclude)
            personal = "personalized" in sources
            if personal:
                slots += len(recs)
                hits += sum(r.goods_id in goods for r in recs)
        share[mode] = hits / slots if slots else 0.0
    return share


def _quiet_log(msg: str) -> None:
    """The references' tuning lines are many: only a skipped one is printed."""
    if "skipped" in msg:
        print(msg, flush=True)


def references(spark, settings, shop, night) -> dict:
    """Each reference's MAP@10 per mode on the night's holdout ({name: {mode: map}}),
    tuned on the window of the same length before it."""
    import datetime as dt

    from bench import quality
    from bench import references as refs
    from etl.clean import read_clean

    end = shop.start + dt.timedelta(days=shop.days - 1)
    days = settings.train.holdout_days
    cut = end - dt.timedelta(days=days - 1)
    splits = (cut - dt.timedelta(days=days), cut - dt.timedelta(days=1), cut, end)
    lines = read_clean(spark, settings.root, shop.start, end).cache()
    catalog = lines.select("goods_id").distinct().count()
    models = {**refs.MODELS,
              "all-time popularity": (refs.recent_popularity, [dict(days=10 ** 6)])}
    found = quality.simple_references(spark, lines, catalog, _quiet_log, splits, models)
    lines.unpersist()
    return {name: {mode: r["metrics"][mode]["map"] for mode in ("all", "new")}
            for name, r in found.items() if "metrics" in r}


def run(name: str, scale: float) -> dict:
    from core.config import Settings
    from pipeline.spark import get_spark
    from shoprecs.demo import free_port, run_night
    from simulation.generator import profile

    work = OUT / name
    shutil.rmtree(work, ignore_errors=True)
    shop = profile(name, scale)
    settings = Settings().replace(warehouse_root=str(work),
                                   bus_url=f"http://127.0.0.1:{free_port()}",
                                   privacy_hmac_key="bench-profiles", bus_per_page=1000)
    spark = get_spark("bench-profiles")
    started = time.perf_counter()
    night = run_night(shop, settings, spark=spark)
    seconds = time.perf_counter() - started
    metrics = json.loads((settings.root / "models" / night.version / "metrics.json")
                         .read_text())
    evaluation = metrics["evaluation"]
    chosen = evaluation.get("selection") or {}
    row = {"profile": name, "orders": len(night.orders), "seconds": round(seconds, 1),
           "published": night.verdict is None, "verdict": night.verdict,
           "repeat_rate": metrics["trained_on"]["repeat_rate"],
           "test_users": evaluation.get("test_users"), "model": metrics["published_model"],
           "rebuy": chosen.get("rebuy"), "reason": chosen.get("reason"),
           "map": {m: {mode: evaluation["models"][m][mode]["map"] for mode in ("all", "new")}
                   for m in MODELS if m in evaluation.get("models", {})}}
    published = (chosen.get("candidates") or {}).get(chosen.get("published"), {})
    row["interval"] = published.get("interval")
    if "models" in evaluation:
        row["references"] = references(spark, settings, shop, night)
    if night.verdict is None:
        row["bought_share"] = bought_share(night, settings)
    return row


def against_references(r: dict) -> str:
    """The best reference per mode, and the verdict: the night's MAP@10 (all) no further
    below the best reference than the half-width of its holdout's 95% interval."""
    refs = r.get("references") or {}
    if not refs:
        return "no holdout evaluation: no references measured"
    mine = r["map"][r["model"]]
    out = []
    for mode in ("all", "new"):
        best = max(refs, key=lambda n: refs[n][mode])
        out.append(f"{mode}: best reference {best} {refs[best][mode]:.4f}, published "
                   f"{mine[mode]:.4f} ({mine[mode] / max(refs[best][mode], 1e-9):.2f}x)")
    best = max(refs, key=lambda n: refs[n]["all"])
    low, high = r.get("interval") or (mine["all"], mine["all"])
    slack = (high - low) / 2
    met = mine["all"] >= refs[best]["all"] - slack
    out.append(f"target: within the holdout's 95% interval (±{slack:.4f}) of the best "
               f"reference on all purchases: {'met' if met else 'NOT met'}")
    if r["profile"] == "churn":
        alltime = refs["all-time popularity"]["all"]
        ratio = mine["all"] / max(alltime, 1e-9)
        out.append(f"target: churn shop, the published {r['model']} ≥ 1.5x all-time "
                   f"popularity: {ratio:.2f}x, {'met' if ratio >= 1.5 else 'NOT met'}")
    return "; ".join(out)


def report(rows: list[dict]) -> None:
    print("\n| shop | orders | night s | outcome | repeat rate | test shoppers | published "
          "(rebuy) | its MAP@10 all / new | popularity | recent popularity | bought in top 10, "
          "all / new |")
    print("|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        maps = " | ".join(f"{r['map'][m]['all']:.4f} / {r['map'][m]['new']:.4f}"
                          for m in (r["model"], "popularity", "recent_popularity"))
        share = r.get("bought_share")
        shares = f"{share['all']:.3f} / {share['new']:.3f}" if share else "—"
        outcome = "published" if r["published"] else "refused by the gate"
        print(f"| {r['profile']} | {r['orders']:,} | {r['seconds']:.0f} | {outcome} | "
              f"{r['repeat_rate']:.3f} | {r['test_users']} | {r['model']} ({r['rebuy']:g}) | "
              f"{maps} | {shares} |")
    for r in rows:
        print(f"\n{r['profile']}: {r['reason']}" + (f"\n  {r['verdict']}" if r["verdict"] else "")
              + f"\n  {against_references(r)}")
    names = sorted({n for r in rows for n in r.get("references") or {}})
    if names:
        print("\nReferences on each night's holdout, MAP@10 all / new:\n")
        print("| shop | published | " + " | ".join(names) + " |")
        print("|---" * (2 + len(names)) + "|")
        for r in rows:
            refs = r.get("references") or {}
            mine = r["map"][r["model"]]
            print(f"| {r['profile']} | {mine['all']:.4f} / {mine['new']:.4f} | " + " | ".join(
                f"{refs[n]['all']:.4f} / {refs[n]['new']:.4f}" if n in refs else "—"
                for n in names) + " |")


def main() -> None:
    from simulation.generator import PROFILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", default=list(PROFILES),
                        help=f"which shops (default: all of {', '.join(PROFILES)})")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shop size as a multiple of the profile's")
    args = parser.parse_args()
    rows = []
    for n, name in enumerate(args.profiles, 1):
        print(f"[{n}/{len(args.profiles)}] the default night on the {name} shop ...", flush=True)
        rows.append(run(name, args.scale))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=2))
    report(rows)


if __name__ == "__main__":
    main()
