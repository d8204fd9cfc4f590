"""Hyperparameter search on a validation window: `shoprecs tune --date D`.

The validation window sits just before the evaluation holdout, so the figures the gate
reads are never the ones the parameters were chosen on:

    |------------ train ------------|-- validation --|-- holdout --|
    start                         val_cut          cut           end

The search has two stages. First every ALS setting of the grid is trained on `train` and
measured alone; then every blend of the weight grid is scored around the best ALS model in
one pass of `hybrid.recommend`, the code that publishes, and measured in one evaluation.
The objective is MAP@k relative to popularity, averaged over both modes (all purchases,
new goods), so neither question is sacrificed for the other. The winner is written to
models/TUNED.json with every trial, and every later training run uses it (its metrics.json
records which tuning it came from), and MLflow the search, each trial a nested run
(models/tracking.py).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass

from pyspark.sql import DataFrame
from tqdm import tqdm

from models import als, baselines, evaluation, hybrid, tracking

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
           base: hybrid.HybridParams = hybrid.HybridParams(), k: int = 10,
           done: Iterable[dict] = (), progress: Callable[[list], None] | None = None) -> dict:
    """Train on lines before `val_cut`, validate on val_cut..val_end; return the report.

    Every trial is scored by `hybrid.recommend`, the code that publishes: each ALS setting
    alone, then every blend of the grid around the best ALS in one pass. `done`: trials an
    interrupted search already measured (not measured again); `progress` is called with
    every trial so far after each step, to save them."""
    from models.train import split

    before, after, shoppers = split(lines, val_cut, val_end)
    before, shoppers = before.cache(), shoppers.cache()
    if shoppers.isEmpty():
        raise ValueError(f"no shopper bought both before {val_cut} and in {val_cut}..{val_end}:"
                         " the validation window is empty; train on more days first")
    catalog = lines.select("goods_id").distinct().count()
    asof = val_cut - dt.timedelta(days=1)
    popular = evaluation.evaluate_modes(baselines.popularity(before, shoppers, 200), before,
                                        after, k, catalog)
    als_grid, weight_grid = list(als_grid), list(weight_grid)
    trials, best = [], {}
    earlier = [t for t in done if t["stage"] == "als"]
    bar = tqdm(total=len(als_grid) + 1, desc="tune", unit="step")

    def measure(stage: str, als_params, fit_seconds, blends: dict) -> None:
        """Score `blends` ({name: HybridParams}) of one ALS fit in one pass, and record them."""
        started = time.perf_counter()
        model = als.train(als.ratings(before, users, items, als_params.strength), als_params)
        seconds = fit_seconds if fit_seconds is not None else time.perf_counter() - started
        lists = hybrid.recommend(before, model, users, items, asof, base, k, shoppers=shoppers,
                                 blends={n: p.weights() for n, p in blends.items()}).cache()
        results = evaluation.evaluate_many(
            {n: lists.where(lists.model == n) for n in blends}, before, after, k, catalog)
        lists.unpersist()
        for name, params in blends.items():
            keep({"stage": stage, "als": asdict(als_params), "hybrid": asdict(params),
                  "score": objective(results[name], popular), "fit_seconds": round(seconds, 1),
                  "metrics": results[name]})
        step_done(stage, als_params)

    def keep(trial: dict) -> None:
        trials.append(trial)
        stage = trial["stage"]
        if stage not in best or trial["score"] > best[stage]["score"]:
            best[stage] = trial

    def step_done(stage: str, als_params) -> None:
        bar.update()
        bar.set_postfix(best=f"{best[stage]['score']:.3f}")
        log.info("tune step %d of %d (%s, ALS %s): best so far %.3f x popularity", bar.n,
                 bar.total, stage, asdict(als_params), best[stage]["score"])
        if progress is not None:
            progress(trials)

    als_only = dataclasses.replace(base, w_repeat=0.0, w_als=1.0, w_items=0.0, w_trending=0.0)
    for als_params in als_grid:  # stage 1: ALS alone
        found = [t for t in earlier if t["als"] == asdict(als_params)]
        if found:  # measured before the search was stopped
            keep(found[0])
            step_done("als", als_params)
            continue
        measure("als", als_params, None, {"als": als_only})
    winner = als.ALSParams(**best["als"]["als"])
    # stage 2: the blends around the best ALS
    measure("hybrid", winner, best["als"]["fit_seconds"],
            {f"blend{i}": dataclasses.replace(base, **w) for i, w in enumerate(weight_grid)})
    bar.close()
    for df in (before, shoppers):
        df.unpersist()
    chosen = best["hybrid"]
    log.info("tuning done: best %.3f x popularity with %s", chosen["score"], chosen["hybrid"])
    return {"tuned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "validation": [val_cut.isoformat(), val_end.isoformat()],
            "als": chosen["als"], "hybrid": chosen["hybrid"], "score": chosen["score"],
            "metrics": chosen["metrics"], "als_alone": best["als"], "popularity": popular,
            "trials": trials}


PROGRESS = "tune-progress.json"  # models/: the trials of a search not finished yet


def run(spark, settings, end: dt.date, **grids) -> dict:
    """Tune on the settings' window ending at `end` and write models/TUNED.json.

    A search that is stopped (Ctrl-C, a killed task) resumes where it was: the trials it
    finished are kept in models/tune-progress.json, keyed by the window and the grids.
    TUNED.json is replaced only when a search completes, so a failed one leaves the last
    good parameters in force."""
    from core.files import atomic_write
    from etl.clean import read_clean
    from models import ids
    from models.train import TUNED

    root = settings.root
    start = end - dt.timedelta(days=settings.train.window_days - 1)
    holdout = max(settings.train.holdout_days, 1)
    val_end = end - dt.timedelta(days=holdout)
    val_cut = val_end - dt.timedelta(days=holdout - 1)
    if val_cut <= start:
        raise ValueError(f"window {start}..{end} too short to hold out two periods of "
                         f"{holdout} days; raise train.window_days")
    (root / "models").mkdir(parents=True, exist_ok=True)
    key = json.dumps({"window": [start.isoformat(), end.isoformat()],
                      "grids": {name: [asdict(g) if is_dataclass(g) else g for g in grid]
                                for name, grid in sorted(grids.items())}}, sort_keys=True)
    saved = root / "models" / PROGRESS
    done = []
    if saved.exists() and json.loads(saved.read_text()).get("key") == key:
        done = json.loads(saved.read_text())["trials"]
        log.info("resuming the search stopped with %d trials measured (%s)", len(done), saved)

    def progress(trials: list) -> None:
        atomic_write(saved, json.dumps({"key": key, "trials": trials}))

    lines = read_clean(spark, root, start, end).cache()
    users = ids.extend(None, lines.select("user_key")).cache()
    items = ids.extend(None, lines.select("goods_id")).cache()
    try:
        report = search(lines, users, items, val_cut, val_end, done=done, progress=progress,
                        **grids)
    finally:
        for df in (lines, users, items):
            df.unpersist()
    atomic_write(root / "models" / TUNED, json.dumps(report, indent=2))
    saved.unlink(missing_ok=True)
    tracking.log_tune(tracking.Target.from_settings(settings), report,
                      (start.isoformat(), end.isoformat()), root / "models" / TUNED)
    return report
