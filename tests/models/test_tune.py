import dataclasses
import datetime as dt

import pytest

from models import als, hybrid, ids, tune
from tests.models.test_hybrid import lines_df

pytestmark = pytest.mark.spark


def test_objective_weighs_both_modes_against_popularity():
    pop = {"all": {"map": 0.1}, "new": {"map": 0.02}}
    assert tune.objective({"all": {"map": 0.2}, "new": {"map": 0.06}}, pop) == pytest.approx(2.5)


def rebuying_shop(spark):
    """Shoppers who rebuy their goods: a blend that weighs repeat purchases must win."""
    rows = []
    for u in range(12):
        mine = [f"g{(u + j) % 6}" for j in range(3)]
        for day in range(1, 9):
            rows += [(f"o{u}-{day}", f"u{u}", g, f"2024-01-0{day}" if day < 10 else "")
                     for g in mine[: 1 + day % 3]]
    lines = lines_df(spark, rows).cache()
    return lines, ids.extend(None, lines.select("user_key")), ids.extend(
        None, lines.select("goods_id"))


def test_search_picks_the_best_trial_and_records_every_one(spark):
    lines, users, items = rebuying_shop(spark)
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


def test_a_stopped_search_resumes_without_measuring_again(spark, monkeypatch):
    lines, users, items = rebuying_shop(spark)
    grid = [als.ALSParams(rank=2, max_iter=3), als.ALSParams(rank=3, max_iter=3)]
    saved = []
    fits = []
    train = als.train
    monkeypatch.setattr(als, "train", lambda *a: fits.append(a[1].rank) or train(*a))

    def stop_after_the_first(trials):
        saved[:] = [dict(t) for t in trials]
        raise KeyboardInterrupt  # Ctrl-C, a killed task

    args = (lines, users, items, dt.date(2024, 1, 6), dt.date(2024, 1, 8))
    kwargs = dict(als_grid=grid, weight_grid=[dict(w_repeat=4.0, w_als=0.25, w_trending=0.0)],
                  base=hybrid.HybridParams(neighbours=3, candidates=6))
    with pytest.raises(KeyboardInterrupt):
        tune.search(*args, **kwargs, progress=stop_after_the_first)
    assert [t["als"]["rank"] for t in saved] == [2] and fits == [2]
    report = tune.search(*args, **kwargs, done=saved)
    assert fits == [2, 3, report["als"]["rank"]]  # the second setting, then the winner's blends
    assert [t["stage"] for t in report["trials"]] == ["als", "als", "hybrid"]
    assert report["trials"][0]["score"] == saved[0]["score"]
