"""How far two published snapshots of the same shop agree: a night in local mode against
the same night on a cluster. Columnar (pyarrow, pandas), so a million shoppers' lists
compare in seconds.

Used by tests/cluster/test_cluster.py (asserts) and bench/cluster.py (prints).
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq


def served(warehouse: Path) -> tuple[str, Path]:
    version = (warehouse / "serving" / "CURRENT").read_text().strip()
    return version, warehouse / "serving" / version


def table(warehouse: Path, name: str, columns: list[str] | None = None):
    return pq.read_table(served(warehouse)[1] / name, columns=columns)


def _rules(warehouse: Path) -> list[tuple]:
    return sorted((tuple(r["antecedent"]), tuple(r["consequent"]), r["confidence"],
                   r["lift"], r["support"]) for r in table(warehouse, "rules").to_pylist())


def _sorted_rows(warehouse: Path, name: str, key: str) -> list[dict]:
    return sorted(table(warehouse, name).to_pylist(), key=lambda r: r[key])


def _top(warehouse: Path, k: int):
    recs = table(warehouse, "user_recs", ["user_key", "goods_id", "rank"]).to_pandas()
    return recs.loc[recs["rank"] <= k, ["user_key", "goods_id"]]


def evaluation(warehouse: Path) -> tuple[dict, dict]:
    manifest = json.loads((served(warehouse)[1] / "manifest.json").read_text())
    return manifest["metrics"]["evaluation"], manifest["metrics"]["trained_on"]


def metric_differences(local: dict, remote: dict) -> dict[str, tuple[float, float]]:
    """{"model/mode/metric": (local, remote)} of every holdout figure both evaluated."""
    out = {}
    for model, modes in local.get("models", {}).items():
        for mode, metrics in modes.items():
            for metric in ("precision", "recall", "map", "ndcg"):
                theirs = remote.get("models", {}).get(model, {}).get(mode, {}).get(metric)
                if theirs is not None:
                    out[f"{model}/{mode}/{metric}"] = (metrics[metric], theirs)
    return out


def agreement(local: Path, remote: Path, k: int = 10) -> dict:
    """What the two warehouses' served versions share: version, rules (exactly), shoppers,
    the share of local top-k (shopper, goods) pairs the remote also lists, popular goods,
    catalog, training counts and the largest holdout metric difference."""
    users = [set(table(w, "user_recs", ["user_key"]).column("user_key").unique().to_pylist())
             for w in (local, remote)]
    a, b = _top(local, k), _top(remote, k)
    shared = len(a.merge(b, on=["user_key", "goods_id"])) / max(len(a), 1)
    (ev_local, counts_local), (ev_remote, counts_remote) = evaluation(local), evaluation(remote)
    diffs = metric_differences(ev_local, ev_remote)
    rules = _rules(local)
    return {
        "version_local": served(local)[0], "version_remote": served(remote)[0],
        "same_version": served(local)[0] == served(remote)[0],
        "rules": len(rules), "same_rules": rules == _rules(remote),
        "shoppers": len(users[0]), "same_shoppers": users[0] == users[1],
        f"top{k}_shared": round(shared, 4),
        "same_popular": table(local, "popular").to_pylist()
        == table(remote, "popular").to_pylist(),
        "same_catalog": _sorted_rows(local, "catalog", "goods_id")
        == _sorted_rows(remote, "catalog", "goods_id"),
        "same_trained_on": counts_local == counts_remote,
        "metric_max_difference": round(max((abs(x - y) for x, y in diffs.values()),
                                           default=0.0), 5),
        "metrics_compared": len(diffs),
    }
