"""The nightly choice among candidates (models/selection.py), on planted evaluations."""
import numpy as np
import pytest

from models import hybrid, selection

PARAMS = hybrid.HybridParams()
SHOPPERS = 400


def planted(per_shopper: dict[str, np.ndarray], all_by_rebuy: dict[str, dict] | None = None):
    """An evaluation of every variant of selection.blends, each candidate scoring the mean of
    its per-shopper values at every rebuy (unless `all_by_rebuy` says otherwise)."""
    result, values = {}, {}
    for name in selection.CANDIDATES:
        for rebuy in selection.REBUY_GRID:
            mean = float(per_shopper[name].mean())
            on_all = (all_by_rebuy or {}).get(name, {}).get(rebuy, mean)
            key = selection.variant(name, rebuy)
            result[key] = {"all": {"map": on_all}, "new": {"map": mean}}
            values[key] = per_shopper[name]
    result["popularity"] = {"all": {"map": 0.01}, "new": {"map": 0.01}}
    return result, values


def shoppers(mean: float, spread: float = 0.02, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, spread, SHOPPERS)


def test_a_planted_winner_is_published_with_its_margin():
    base = shoppers(0.10)
    result, values = planted({"hybrid": base, "als": base + 0.05, "item_knn": base - 0.01,
                              "recent_popularity": base - 0.02,
                              "latest_popularity": base - 0.03})
    models, chosen = selection.choose(result, values, PARAMS)
    assert chosen["published"] == "als" and chosen["default"] == "hybrid"
    assert chosen["margin"] == pytest.approx(0.05)
    low, high = chosen["interval"]
    assert low == pytest.approx(0.05) == high  # paired: the shared per-shopper noise cancels
    assert "als beats the configured hybrid on map@10 (all) by 0.0500" in chosen["reason"]
    assert set(models) == {*selection.CANDIDATES, "popularity"}  # variants folded
    assert models["als"]["all"]["map"] == pytest.approx(base.mean() + 0.05)


def test_a_lead_within_the_noise_keeps_the_configured_blend():
    # ALS leads by 0.002 on average, but shopper by shopper the two differ by +-0.3.
    noise = np.random.default_rng(5).choice([-0.3, 0.3], SHOPPERS)
    base = shoppers(0.10)
    result, values = planted({"hybrid": base, "als": base + 0.002 + noise - noise.mean(),
                              "item_knn": base - 0.05, "recent_popularity": base - 0.05,
                              "latest_popularity": base - 0.05})
    _, chosen = selection.choose(result, values, PARAMS)
    assert chosen["published"] == "hybrid"
    assert chosen["interval"][0] < 0 < chosen["interval"][1]
    assert "within the holdout's noise" in chosen["reason"]


def test_rebuy_is_calibrated_on_all_purchases_and_the_lowest_wins_a_tie():
    base = shoppers(0.10)
    # hybrid: bought goods help up to rebuy 0.5; als: they never earned a hit (a tie).
    result, values = planted(
        {name: base for name in selection.CANDIDATES},
        {"hybrid": {1.0: 0.12, 0.5: 0.13, 0.25: 0.11, 0.0: 0.09},
         "als": {1.0: 0.05, 0.5: 0.05, 0.25: 0.05, 0.0: 0.05}})
    _, chosen = selection.choose(result, values, PARAMS)
    assert chosen["candidates"]["hybrid"]["rebuy"] == 0.5
    assert chosen["candidates"]["als"]["rebuy"] == 0.0
    assert chosen["published"] == "hybrid" and chosen["rebuy"] == 0.5
    assert selection.published_blend(chosen, PARAMS) == (
        "hybrid", {**PARAMS.weights(), "rebuy": 0.5})


def test_without_an_evaluation_the_configured_blend_is_published():
    assert selection.published_blend(None, PARAMS) == ("hybrid", PARAMS.weights())
    chosen = {"published": "recent_popularity", "rebuy": 0.0}
    assert selection.published_blend(chosen, PARAMS) == (
        "recent_popularity", {"trending": 1.0, "rebuy": 0.0})
    chosen = {"published": "latest_popularity", "rebuy": 0.0}
    assert selection.published_blend(chosen, PARAMS) == (
        "latest_popularity", {"recent": 1.0, "rebuy": 0.0})


def test_bootstrap_interval_covers_the_mean_of_the_differences():
    diffs = np.random.default_rng(3).normal(0.02, 0.1, 2000)
    low, high = selection.bootstrap_interval(diffs)
    assert low < diffs.mean() < high and high - low < 0.02
    assert selection.bootstrap_interval(np.zeros(0)) == (0.0, 0.0)
