"""The nightly training job: clean orders of the window -> models/<version>/.

    models/<version>/als/, fpgrowth/      the fitted Spark models
    models/<version>/ids/users, ids/items the id mapping (extended from models/LATEST)
    models/<version>/results/             what publishing serves: user_recs (the hybrid of
                                          models/hybrid.py), rules, similar, popular,
                                          catalog, history (what each shopper bought),
                                          user_factors, item_factors (the fit's, by key)
                                          (Parquet)
    models/<version>/parts/als.json,      what each training step produced, written last by
                   parts/fpgrowth.json    that step: a step that finds its part skips it
    models/<version>/metrics.json         window, counts, parameters, holdout evaluation
    models/<version>/report.html          the evaluation for people (models/report.py)
    models/<version>/mlflow.json          the MLflow run that tracked it (models/tracking.py)
    models/<version>/_SUCCESS             written last; models/LATEST then names it

Three steps, so that Airflow can run the first two in parallel: `train_als` (id mapping,
holdout evaluation, recommendations, similar, popular, catalog), `train_fpgrowth` (rules),
then `finalize` (metrics.json, report, _SUCCESS, LATEST). `run` calls them in turn.

The version is `<end date>-<fingerprint>`, the fingerprint hashing the landed data of the
window (manifest checksums) and the parameters (see `Plan`): running the same night twice
finds the version already trained and does nothing, and parallel steps agree on it.

Beside the final fit (a concurrent Spark job), every model is trained again without the
window's last `train.holdout_days` days and measured on them (models/evaluation.py),
scoring the hybrid, ALS alone and the kNN alone in one `hybrid.recommend` pass; the gate
(models/gate.py) reads those figures before publishing. Parameters come from
models/TUNED.json when `shoprecs tune` wrote one, else from the defaults.

Run with: shoprecs train --date 2024-01-30
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core.errors import NoLandedData
from core.files import atomic_write
from engine.versions import served_model
from etl.clean import read_clean
from models import (
    als,
    baselines,
    content,
    evaluation,
    fpgrowth,
    hybrid,
    ids,
    report,
    selection,
    similar,
    tracking,
)

log = logging.getLogger(__name__)
POPULAR_K = 100
SIMILAR_K = 20
TUNED = "TUNED.json"  # written by `shoprecs tune`, read by every later run
PARTS = "parts"  # models/<version>/parts/<part>.json: what each training step produced


def fingerprint(root: Path, end: dt.date, params: dict) -> str:
    """A hash of `params` and of every day landed up to `end` (the window trains the fits,
    the whole history feeds each shopper's own signals): each day's bytes as landed, or
    as they trained before the retention rewrote phones into keys (`trains_as`: the rows
    are the same, privacy/_rewrite.py). An erasure or a key rotation changes them."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for path in sorted((root / "landing" / "orders").glob("dt=*/_manifest.json")):
        day = path.parent.name[3:]
        if day <= end.isoformat():
            manifest = json.loads(path.read_text())
            digest.update(f"{day}:{manifest.get('trains_as', manifest['sha256'])}".encode())
    return digest.hexdigest()[:10]


def popular(lines: DataFrame, k: int = POPULAR_K) -> DataFrame:
    """(goods_id, score, rank): goods bought in the most orders; score = share of orders."""
    n = max(lines.select("order_id").distinct().count(), 1)
    # k rows at most: ranking them on the driver beats a single-partition window.
    top = baselines.most_ordered(lines, k).collect()
    rows = [(r["goods_id"], r["orders"] / n, rank) for rank, r in enumerate(top, 1)]
    return lines.sparkSession.createDataFrame(rows, "goods_id string, score double, rank int")


def purchases(history: DataFrame) -> DataFrame:
    """(user_key, goods: sorted distinct goods ids): everything each known shopper bought in
    the clean history, so that the service leaves out exactly what was bought
    (`exclude_bought`) on every path, not only among the stored lists' goods."""
    return (hybrid.bought_pairs(history).groupBy("user_key")
            .agg(F.sort_array(F.collect_list("goods_id")).alias("goods")))


def repeat_rate(lines: DataFrame) -> float:
    """The share of known shoppers' purchases (goods per order) that buy again a goods the
    shopper bought in an earlier order of `lines`: 0 in a shop nobody re-buys in."""
    bought = lines.where(F.col("user_key").isNotNull()).select(
        "user_key", "goods_id", "order_id").distinct()
    row = bought.agg(F.count("*").alias("purchases"),
                     F.count_distinct("user_key", "goods_id").alias("pairs")).first()
    return round((row["purchases"] - row["pairs"]) / row["purchases"], 4) \
        if row["purchases"] else 0.0


def split(lines: DataFrame, cut: dt.date, end: dt.date | None = None,
          history: DataFrame | None = None):
    """(before, after, test shoppers): lines before `cut`, lines from `cut` to `end`, and
    the shoppers who bought in both (before: in `history`, when given)."""
    before = lines.where(F.col("dt").cast("string") < cut.isoformat())
    after = lines.where(F.col("dt").cast("string") >= cut.isoformat())
    if end is not None:
        after = after.where(F.col("dt").cast("string") <= end.isoformat())
    known = before if history is None else history.where(
        F.col("dt").cast("string") < cut.isoformat())
    shoppers = after.where(F.col("user_key").isNotNull()).select("user_key").distinct() \
        .join(known.select("user_key").distinct(), "user_key")
    return before, after, shoppers


def candidates(before: DataFrame, shoppers: DataFrame, users: DataFrame, items: DataFrame,
               cut: dt.date, als_params: als.ALSParams, params: hybrid.HybridParams, k: int,
               rebuys: tuple[float, ...] = selection.REBUY_GRID,
               history: DataFrame | None = None) -> tuple[dict[str, DataFrame], DataFrame]:
    """Every candidate's (user_key, goods_id, score) for the `shoppers`, each trained on
    `before` only (and on `history` before the cut for the shoppers' own signals), at every
    `rebuy` (models/selection.py names them), and popularity: the best k goods overall and
    the best k new, which is all an evaluation at k reads in either mode. Also the cached
    lists behind them (unpersist when done)."""
    model = als.train(als.ratings(before, users, items, als_params.strength), als_params)
    asof = cut - dt.timedelta(days=1)
    blends = selection.blends(params, rebuys)
    lists = hybrid.recommend(before, model, users, items, asof, params, k, shoppers=shoppers,
                             blends=blends, history=history).cache()
    scored = {name: lists.where(F.col("model") == name).select("user_key", "goods_id", "score")
              for name in blends}
    scored["popularity"] = baselines.popularity(before, shoppers, 200)
    return scored, lists


def evaluate_holdout(lines: DataFrame, users: DataFrame, items: DataFrame, cut: dt.date,
                     als_params: als.ALSParams, params: hybrid.HybridParams, k: int = 10,
                     end: dt.date | None = None, metric: str = "map", mode: str = "all",
                     history: DataFrame | None = None) -> dict:
    """Every candidate and popularity, trained before `cut` and measured on the days from
    `cut` (to `end`) in both modes, and the candidate that is published (models/selection.py,
    by `metric`@k in `mode`, the gate's). `history` (default `lines`): every clean line up
    to the window's end; the test shoppers are those who bought in it before the cut and
    bought again from the cut on, and "new" means never bought before the cut."""
    history = lines if history is None else history
    before, after, shoppers = split(lines, cut, end, history)
    known = history.where(F.col("dt").cast("string") < cut.isoformat())
    shoppers = shoppers.cache()
    test_users = shoppers.count()
    if test_users == 0 or before.isEmpty():
        shoppers.unpersist()
        return {"skipped": f"no shoppers bought both before and after {cut}"}
    scored, lists = candidates(before, shoppers, users, items, cut, als_params, params, k,
                               history=known)
    catalog = lines.select("goods_id").distinct().count()
    result, per_shopper = evaluation.evaluate_paired(scored, known, after, k, catalog,
                                                     metric, mode)
    for df in (shoppers, lists):
        df.unpersist()
    models, chosen = selection.choose(result, per_shopper, params, metric, mode, k)
    return {"k": k, "cut": cut.isoformat(), "test_users": test_users, "models": models,
            "selection": chosen}


def write_factors(model, users: DataFrame, items: DataFrame, results: Path) -> None:
    """The fit's factors by shopper and goods (results/user_factors, item_factors): what the
    service ranks a shopper's goods with when the filters thin the precomputed list."""
    sides = ((model.userFactors, users, "user_key", "user_factors"),
             (model.itemFactors, items, "goods_id", "item_factors"))
    for factors, mapping, column, name in sides:
        (factors.join(mapping, "id").select(F.col("key").alias(column), "features")
         .write.mode("overwrite").parquet(str(results / name)))


def write_similar(model, items: DataFrame, catalog: DataFrame, path: Path) -> None:
    """Each goods' similar goods at `path`: by ALS item factors for the goods shoppers
    bought, by name for the rest (models/content.py), so a product listed today has
    neighbours tonight."""
    similar.similar_items(model, items, SIMILAR_K).write.mode("overwrite").parquet(str(path))
    with_factors = catalog.sparkSession.read.parquet(str(path)).select("goods_id").distinct()
    (content.name_neighbours(catalog, SIMILAR_K).join(with_factors, "goods_id", "left_anti")
     .write.mode("append").parquet(str(path)))


def _previous_mapping(spark: SparkSession, root: Path, kind: str) -> DataFrame | None:
    latest = root / "models" / "LATEST"
    if not latest.exists():
        return None
    return spark.read.parquet(str(root / "models" / latest.read_text().strip() / "ids" / kind))


def tuned_params(root: Path) -> tuple[als.ALSParams, hybrid.HybridParams, dict | None]:
    """The parameters `shoprecs tune` chose (models/TUNED.json), else the defaults."""
    path = root / "models" / TUNED
    if not path.exists():
        return als.ALSParams(), hybrid.HybridParams(), None
    tuned = json.loads(path.read_text())
    return (als.ALSParams(**tuned["als"]), hybrid.HybridParams(**tuned["hybrid"]),
            {k: tuned.get(k) for k in ("tuned_at", "validation", "score")})


@dataclass(frozen=True)
class Plan:
    """One training run, fixed before any Spark work: the window, every parameter and the
    version they fingerprint. The parallel ALS and FP-Growth steps of the DAG each compute
    it and so write into the same models/<version>/."""

    root: Path
    start: dt.date
    end: dt.date
    holdout_days: int
    als: als.ALSParams
    hybrid: hybrid.HybridParams
    fp: fpgrowth.FPGrowthParams
    tuning: dict | None
    metric: str  # what the holdout chooses the published candidate by: the gate's
    mode: str
    params: dict  # what the fingerprint hashes and metrics.json records
    version: str
    tracking: tracking.Target | None = None  # where finalize logs the run (not fingerprinted)

    @property
    def out(self) -> Path:
        return self.root / "models" / self.version

    @property
    def done(self) -> bool:
        return (self.out / "_SUCCESS").exists()


def plan(settings, end: dt.date, als_params: als.ALSParams | None = None,
         hybrid_params: hybrid.HybridParams | None = None,
         fp_params: fpgrowth.FPGrowthParams | None = None) -> Plan:
    """The training run for the window of `train.window_days` ending at `end`."""
    root = settings.root
    fp_params = fp_params or fpgrowth.FPGrowthParams.from_settings(settings.fpgrowth)
    default_als, default_hybrid, tuning = tuned_params(root)
    als_params = als_params or default_als
    if settings.train.top_k != als_params.top_k:
        als_params = dataclasses.replace(als_params, top_k=settings.train.top_k)
    hybrid_params = hybrid_params or default_hybrid
    start = end - dt.timedelta(days=settings.train.window_days - 1)
    params = {"als": asdict(als_params), "hybrid": asdict(hybrid_params),
              "fpgrowth": asdict(fp_params), "window": [start.isoformat(), end.isoformat()],
              "holdout_days": settings.train.holdout_days,
              "selection": {"metric": settings.gate.metric, "mode": settings.gate.mode}}
    version = f"{end:%Y%m%d}-{fingerprint(root, end, params)}"
    return Plan(root, start, end, settings.train.holdout_days, als_params, hybrid_params,
                fp_params, tuning, settings.gate.metric, settings.gate.mode, params, version,
                tracking.Target.from_settings(settings))


def _read_lines(spark: SparkSession, p: Plan) -> DataFrame:
    lines = read_clean(spark, p.root, p.start, p.end).cache()
    if lines.isEmpty():
        raise NoLandedData(f"no clean orders between {p.start} and {p.end}: run `shoprecs "
                           f"extract` and `shoprecs clean` for those days first")
    return lines


def part_done(p: Plan, part: str) -> dict | None:
    """The part's summary if this version already has it (or is complete), else None."""
    path = p.out / PARTS / f"{part}.json"
    if not (path.exists() or p.done):
        return None
    log.info("%s part of model %s already trained; nothing to do", part, p.version)
    return json.loads(path.read_text()) if path.exists() else {}


def _part_finish(p: Plan, part: str, summary: dict) -> dict:
    (p.out / PARTS).mkdir(parents=True, exist_ok=True)
    atomic_write(p.out / PARTS / f"{part}.json", json.dumps(summary, indent=2))
    return summary


def train_als(spark: SparkSession, p: Plan, lines: DataFrame | None = None) -> dict:
    """The ALS side of model p.version: the id mapping, the holdout evaluation, the hybrid
    recommendations, similar items, popular items and the catalog; `parts/als.json` last.

    `lines`: the window's cached lines when the caller read them (`run`, which shares them
    with the FP-Growth part and releases them); else the part reads and releases its own."""
    if (done := part_done(p, "als")) is not None:
        return done
    root, out = p.root, p.out
    release = lines is None
    lines = _read_lines(spark, p) if release else lines
    history = read_clean(spark, root, None, p.end).cache()  # each shopper's own signals
    inter = als.interactions(lines, p.als.strength)
    users = ids.extend(_previous_mapping(spark, root, "users"), inter.select("user_key")).cache()
    items = ids.extend(_previous_mapping(spark, root, "items"), lines.select("goods_id")).cache()
    cut = p.end - dt.timedelta(days=p.holdout_days - 1)
    # The holdout evaluation (models trained before the cut) and the final fit share only
    # the cached lines and id mappings: run them as concurrent Spark jobs from two
    # threads, so that one's small and serial stages leave no core idle.
    with ThreadPoolExecutor(1, thread_name_prefix="holdout") as pool:
        if p.holdout_days > 0 and cut > p.start:
            log.info("evaluating on the holdout %s..%s (models trained before %s)",
                     cut, p.end, cut)
            evaluating = pool.submit(evaluate_holdout, lines, users, items, cut, p.als,
                                     p.hybrid, metric=p.metric, mode=p.mode, history=history)
        else:
            evaluating = None
        # Not counted just for this log line (a job of its own); trained_on counts the
        # window's shoppers and goods below.
        ratings = als.ratings(lines, users, items, p.als.strength).cache()
        log.info("training ALS %s", p.als)
        model = als.train(ratings, p.als)
        results = out / "results"
        popular(lines).write.mode("overwrite").parquet(str(results / "popular"))
        purchases(history).write.mode("overwrite").parquet(str(results / "history"))
        catalog = spark.read.parquet(str(root / "clean" / "goods"))
        catalog.write.mode("overwrite").parquet(str(results / "catalog"))
        write_similar(model, items, catalog, results / "similar")
        write_factors(model, users, items, results)
        users.write.mode("overwrite").parquet(str(out / "ids" / "users"))
        items.write.mode("overwrite").parquet(str(out / "ids" / "items"))
        model.write().overwrite().save(str(out / "als"))
        counts = {**lines.agg(F.count("*").alias("lines"),
                              F.countDistinct("user_key").alias("shoppers"),
                              F.countDistinct("goods_id").alias("goods")).first().asDict(),
                  "history_shoppers": history.agg(F.countDistinct("user_key")).first()[0],
                  "repeat_rate": repeat_rate(history)}
        holdout = evaluating.result() if evaluating else {
            "skipped": "train.holdout_days is 0 or not shorter than the window"}
    # What the holdout chose (the configured hybrid when there was no holdout).
    name, blend = selection.published_blend(holdout.get("selection"), p.hybrid)
    log.info("scoring %s %s for every shopper", name, blend)
    recs = hybrid.recommend(lines, model, users, items, p.end, p.hybrid, p.als.top_k,
                            blends={name: blend}, history=history)
    recs.drop("model").write.mode("overwrite").parquet(str(out / "results" / "user_recs"))
    summary = {"trained_on": counts, "evaluation": holdout, "blend": blend}
    for df in (users, items, ratings, history, *([lines] if release else [])):
        df.unpersist()
    return _part_finish(p, "als", summary)


def train_fpgrowth(spark: SparkSession, p: Plan, lines: DataFrame | None = None) -> dict:
    """The FP-Growth side of model p.version: the rules; `parts/fpgrowth.json` last.

    `lines`: as train_als."""
    if (done := part_done(p, "fpgrowth")) is not None:
        return done
    release = lines is None
    lines = _read_lines(spark, p) if release else lines
    all_baskets = fpgrowth.baskets(lines)
    basket_df = fpgrowth.minable(all_baskets, p.fp).cache()
    n_baskets, n_orders = basket_df.count(), all_baskets.count()
    support = p.fp.support_for(n_baskets)
    log.info("training FP-Growth on %d baskets (%d bulk orders of more than %d goods left "
             "out), minSupport %.4f", n_baskets, n_orders - n_baskets, p.fp.max_basket_items,
             support)
    fp_model = fpgrowth.train(basket_df, support, p.fp)
    rules_path = p.out / "results" / "rules"
    fpgrowth.rules(fp_model).write.mode("overwrite").parquet(str(rules_path))
    fp_model.write().overwrite().save(str(p.out / "fpgrowth"))
    summary = {"orders": n_orders, "baskets_mined": n_baskets,
               "min_support": fp_model.getMinSupport(),
               "rules": spark.read.parquet(str(rules_path)).count()}
    fp_model.freqItemsets.unpersist()
    for df in (basket_df, *([lines] if release else [])):
        df.unpersist()
    return _part_finish(p, "fpgrowth", summary)


def finalize(p: Plan, served: dict | None = None) -> str:
    """Assemble metrics.json and report.html (compared with `served`, the metrics of the
    version being served: engine.versions.served_model), log them to MLflow (never
    failing), then `_SUCCESS` and models/LATEST (pure Python). Raises FileNotFoundError
    naming a part not trained yet."""
    if p.done:
        log.info("model %s already trained for this data and parameters; nothing to do",
                 p.version)
        return p.version
    parts = {}
    for part in ("als", "fpgrowth"):
        path = p.out / PARTS / f"{part}.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: the {part} part of model {p.version} is "
                                    f"not trained (run train_{part} for {p.end} first)")
        parts[part] = json.loads(path.read_text())
    fp = parts["fpgrowth"]
    metrics = {"version": p.version, "window": p.params["window"], "params": p.params,
               "published_model": (parts["als"]["evaluation"].get("selection") or {}).get(
                   "published", selection.DEFAULT), "tuning": p.tuning,
               "blend": parts["als"].get("blend"),
               "trained_on": {"orders": fp["orders"], **parts["als"]["trained_on"]},
               "evaluation": parts["als"]["evaluation"],
               "fpgrowth": {"min_support": fp["min_support"], "rules": fp["rules"],
                            "baskets_mined": fp.get("baskets_mined")}}
    atomic_write(p.out / "metrics.json", json.dumps(metrics, indent=2))
    report.write(p.out, served)
    if p.tracking is not None:  # before _SUCCESS: a re-run replaces the run, never adds one
        tracking.log_train(p.tracking, metrics, p.out)
    atomic_write(p.out / "_SUCCESS", "")
    atomic_write(p.root / "models" / "LATEST", p.version)
    log.info("trained model %s: %s", p.version, metrics["trained_on"])
    return p.version


def run(spark: SparkSession, settings, end: dt.date, als_params: als.ALSParams | None = None,
        hybrid_params: hybrid.HybridParams | None = None,
        fp_params: fpgrowth.FPGrowthParams | None = None) -> str:
    """Train, evaluate and write everything publishing needs for the window ending at `end`
    (both parts in turn, then finalize); return the model version."""
    p = plan(settings, end, als_params, hybrid_params, fp_params)
    if p.done:  # finalize says so, and returns the version
        return finalize(p)
    # Like the DAG's parallel tasks: the rules are mined while the ALS part trains, both
    # reading the window's lines from one cache, filled here first: two parts filling it
    # side by side each run the read's shuffle (two query plans, two exchanges).
    try:
        lines = _read_lines(spark, p)
        with ThreadPoolExecutor(1, thread_name_prefix="fpgrowth") as pool:
            mining = pool.submit(train_fpgrowth, spark, p, lines)
            train_als(spark, p, lines)
            mining.result()
    finally:
        read_clean(spark, p.root, p.start, p.end).unpersist()
    return finalize(p, served_model(settings)[1])
