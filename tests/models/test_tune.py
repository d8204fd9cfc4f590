import dataclasses
import datetime as dt

import pytest

from models import als, hybrid, ids, tune
from tests.models.test_hybrid import lines_df

pytestmark = pytest.mark.spark


def test_objective_weighs_both_modes_against_popularity():
    pop = {"all": {"map": 0.1}, "new": {"map": 0.02}}
    assert tune.objective({"all": {"map": 0.2}, "new": {"map": 0.06}}, pop) == pytest.approx(2.5)


def test_search_picks_the_best_trial_and_records_every_one(spark):
    # Shoppers rebuy their goods: a blend that weighs repeat purchases must win.
    rows = []
    for u in range(12):
        mine = [f"g{(u + j) % 6}" for j in range(3)]
        for day in range(1, 9):
            rows += [(f"o{u}-{day}", f"u{u}", g, f"2024-01-0{day}" if day < 10 else "")
                     for g in mine[: 1 + day % 3]]
    lines = lines_df(spark, rows).cache()
    users = ids.extend(None, lines.select("user_key"))
    items = ids.extend(None, lines.select("goods_id"))
    grid = [als.ALSParams(rank=2, max_iter=3)]
    weights = [dict(w_repeat=0.0, w_als=1.0, w_trending=0.0),
               dict(w_repeat=4.0, w_als=0.25, w_trending=0.0)]
    report = tune.search(lines, users, items, dt.date(2024, 1, 6), dt.date(2024, 1, 8),
                         als_grid=grid, weight_grid=weights,
                         base=hybrid.HybridParams(neighbours=3, candidates=6))
    assert [t["stage"] for t in report["trials"]] == ["als", "hybrid", "hybrid"]
    best = max((t for t in report["trials"] if t["stage"] == "hybrid"), key=lambda t: t["score"])
    assert report["score"] == best["score"] > 0
    assert report["hybrid"] == best["hybrid"]
    assert report["als"] == report["als_alone"]["als"]
    assert report["validation"] == ["2024-01-06", "2024-01-08"]
    assert dataclasses.asdict(als.ALSParams(**report["als"]))  # round-trips into params
