"""The default night on every kind of generated shop: what it publishes, and how well.

For each profile of simulation.generator.PROFILES (full size unless --scale), a fresh warehouse
under var/bench/profiles/<name>, the bus simulator, and `shoprecs run` over all its days
with the default settings. Printed per shop:

* the night's outcome: published, or the quality gate's verdict;
* which candidate the holdout chose (models/selection.py), at which `rebuy`;
* holdout MAP@10, all purchases and new goods, of what was published, of popularity and
  of "most bought in the last 30 days" (recent_popularity), from the version's
  metrics.json (every candidate's figures are in var/bench/profiles/results.json);
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
MODELS = ("popularity", "hybrid", "recent_popularity", "als", "item_knn")


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


def run(name: str, scale: float) -> dict:
    from core.config import Settings
    from shoprecs.demo import free_port, run_night
    from simulation.generator import profile

    work = OUT / name
    shutil.rmtree(work, ignore_errors=True)
    shop = profile(name, scale)
    settings = Settings().replace(warehouse_root=str(work),
                                   bus_url=f"http://127.0.0.1:{free_port()}",
                                   privacy_hmac_key="bench-profiles", bus_per_page=1000)
    started = time.perf_counter()
    night = run_night(shop, settings)
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
    if night.verdict is None:
        row["bought_share"] = bought_share(night, settings)
    return row


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
        print(f"\n{r['profile']}: {r['reason']}" + (f"\n  {r['verdict']}" if r["verdict"] else ""))


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
