"""Hyperparameter search on a validation window: `shoprecs tune --date D`.

The validation window sits just before the evaluation holdout, so the figures the gate
reads are never the ones the parameters were chosen on:

    |------------ train ------------|-- validation --|-- holdout --|
    start                         val_cut          cut           end

The search has two stages. First every ALS setting of the grid is trained on `train` and
measured alone; then the blend weights are searched on the best ALS model's cached
components, which costs one evaluation per blend, not one fit.
The objective is MAP@k relative to popularity, averaged over both modes (all purchases,
new goods), so neither question is sacrificed for the other. The winner is written to
models/TUNED.json with every trial, and every later training run uses it (its metrics.json
records which tuning it came from).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Iterable

from pyspark.sql import DataFrame
from tqdm import tqdm

from models import als, baselines, evaluation, hybrid

log = logging.getLogger(__name__)

# Iterations are searched too: on Online Retail 5 validated as well as 10 (bench/RESULTS.md)
# at half the fit. Cheapest first, so a quick search (ALS_GRID[:2]) stays quick.
ALS_GRID = [als.ALSParams(rank=r, reg_param=reg, alpha=a, max_iter=i, strength="count")
            for i, r, reg, a in itertools.product((5, 10), (32, 64), (0.1, 1.0), (1.0, 10.0))]
# Only the ratios of the weights matter: w_items stays at its default, the others move.
WEIGHT_GRID = [dict(w_repeat=r, w_als=a, w_trending=t)
               for r, a, t in itertools.product((1.0, 2.0, 4.0), (0.25, 0.5, 1.0), (0.0, 0.25))]


def objective(result: dict, popular: dict, metric: str = "map") -> float:
    """Mean over modes of the metric as a multiple of popularity's."""
    return sum(result[m][metric] / max(popular[m][metric], 1e-9)
               for m in evaluation.MODES) / len(evaluation.MODES)


def search(lines: DataFrame, users: DataFrame, items: DataFrame, val_cut: dt.date,
           val_end: dt.date, *, als_grid: Iterable[als.ALSParams] = ALS_GRID,
           weight_grid: Iterable[dict] = WEIGHT_GRID,
           base: hybrid.HybridParams = hybrid.HybridParams(), k: int = 10) -> dict:
    """Train on lines before `val_cut`, validate on val_cut..val_end; return the report."""
    from models.train import split

    before, after, shoppers = split(lines, val_cut, val_end)
    before, shoppers = before.cache(), shoppers.cache()
    if shoppers.isEmpty():
        raise ValueError(f"no shopper bought both before {val_cut} and in {val_cut}..{val_end}:"
                         " the validation window is empty; train on more days first")
    catalog = lines.select("goods_id").distinct().count()
    pairs = hybrid.bought_pairs(before).cache()
    neighbours = hybrid.item_neighbours(before, base.neighbours, base.block_items).cache()

    def measure(recs: DataFrame) -> dict:
        return evaluation.evaluate_modes(recs, before, after, k, catalog)

    popular = measure(baselines.popularity(before, shoppers, 200))
    als_grid, weight_grid = list(als_grid), list(weight_grid)
    trials, best = [], {}
    bar = tqdm(total=len(als_grid) + len(weight_grid), desc="tune", unit="trial")
    asof = val_cut - dt.timedelta(days=1)

    def record(stage: str, als_params, params, parts, fit_seconds):
        result = measure(hybrid.blend(parts, params.weights(), pairs))
        trial = {"stage": stage, "als": als_params.as_dict(), "hybrid": params.as_dict(),
                 "score": objective(result, popular), "fit_seconds": round(fit_seconds, 1),
                 "metrics": result}
        trials.append(trial)
        if stage not in best or trial["score"] > best[stage]["score"]:
            best[stage] = trial
        bar.update()
        bar.set_postfix(best=f"{best[stage]['score']:.3f}")

    def fit(als_params):
        started = time.perf_counter()
        model = als.train(als.ratings(before, users, items, als_params.strength), als_params)
        seconds = time.perf_counter() - started
        parts = {name: df.cache() for name, df in hybrid.components(
            before, model, users, items, shoppers, asof, base, neighbours).items()}
        return parts, seconds

    als_only = dataclasses.replace(base, w_repeat=0.0, w_als=1.0, w_items=0.0, w_trending=0.0)
    for als_params in als_grid:  # stage 1: ALS alone
        parts, seconds = fit(als_params)
        record("als", als_params, als_only, parts, seconds)
        for df in parts.values():
            df.unpersist()
    winner = als.ALSParams(**best["als"]["als"])
    parts, seconds = fit(winner)
    for weights in weight_grid:  # stage 2: the blend around the best ALS
        record("hybrid", winner, dataclasses.replace(base, **weights), parts, seconds)
    for df in parts.values():
        df.unpersist()
    bar.close()
    for df in (before, shoppers, pairs, neighbours):
        df.unpersist()
    chosen = best["hybrid"]
    log.info("tuning done: best %.3f x popularity with %s", chosen["score"], chosen["hybrid"])
    return {"tuned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "validation": [val_cut.isoformat(), val_end.isoformat()],
            "als": chosen["als"], "hybrid": chosen["hybrid"], "score": chosen["score"],
            "metrics": chosen["metrics"], "als_alone": best["als"], "popularity": popular,
            "trials": trials}


def run(spark, settings, end: dt.date, **grids) -> dict:
    """Tune on the settings' window ending at `end` and write models/TUNED.json."""
    from etl.clean import read_clean
    from models import ids
    from models.train import TUNED, _write_text

    root = settings.warehouse
    start = end - dt.timedelta(days=settings.train_window_days - 1)
    holdout = max(settings.train_holdout_days, 1)
    val_end = end - dt.timedelta(days=holdout)
    val_cut = val_end - dt.timedelta(days=holdout - 1)
    if val_cut <= start:
        raise ValueError(f"window {start}..{end} too short to hold out two periods of "
                         f"{holdout} days; raise train.window_days")
    lines = read_clean(spark, root, start, end).cache()
    users = ids.extend(None, lines.select("user_key")).cache()
    items = ids.extend(None, lines.select("goods_id")).cache()
    report = search(lines, users, items, val_cut, val_end, **grids)
    (root / "models").mkdir(parents=True, exist_ok=True)
    _write_text(root / "models" / TUNED, json.dumps(report, indent=2))
    lines.unpersist()
    return report
