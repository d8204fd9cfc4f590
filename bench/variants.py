"""How varied are a product's top associations, with and without collapsing variants?

Reads the snapshot a warehouse serves (default: the Online Retail night of
`make bench-scale`, var/bench/scale/real) and, for every product with at least 10 rules,
looks at its top 10 by confidence as the API gives them, once as mined and once with
`collapse_variants=true`:

* distinct products: how many different variant keys (the name without colour and size
  words, engine.recommender.variant_key) the 10 consequents are;
* own variants: how many of the 10 are another colour or size of the product itself.

Run with: .venv/bin/python -m bench.variants [--warehouse DIR]
"""
from __future__ import annotations

import argparse
import statistics

from bench.retail_data import ROOT


def measure(engine, collapse: bool) -> dict[str, float]:
    from engine.recommender import variant_key

    distinct, own, full = [], [], 0
    for goods_id in engine.snapshot.rules_by_item:
        if len(engine.snapshot.rules_by_item[goods_id]) < 10:
            continue
        rules = engine.associations(goods_id, 10, collapse_variants=collapse)
        mine = variant_key(engine.name(goods_id))
        keys = [variant_key(engine.name(r.consequent[0])) for r in rules]
        distinct.append(len(set(keys)))
        own.append(sum(k == mine for k in keys))
        full += len(rules) == 10
    return {"products": len(distinct), "distinct": statistics.mean(distinct),
            "own": statistics.mean(own), "full": full}


def main() -> None:
    from engine import RecommendationEngine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=str(ROOT / "var" / "bench" / "scale" / "real"))
    args = parser.parse_args()
    engine = RecommendationEngine.from_warehouse(args.warehouse, hmac_key="-")
    print(f"version {engine.version}\n\n| top 10 rules | products | distinct products in "
          "the 10 (mean) | the product's own variants (mean) | products still given 10 |\n"
          "|---|---:|---:|---:|---:|")
    for label, collapse in (("as mined", False), ("collapse_variants=true", True)):
        m = measure(engine, collapse)
        print(f"| {label} | {m['products']} | {m['distinct']:.2f} | {m['own']:.2f} | "
              f"{m['full']} |")


if __name__ == "__main__":
    main()
