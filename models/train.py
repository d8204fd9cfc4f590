"""The nightly training job: clean orders of the window -> models/<version>/.

    models/<version>/als/, fpgrowth/      the fitted Spark models
    models/<version>/ids/users, ids/items the id mapping (extended from models/LATEST)
    models/<version>/results/             what publishing serves: user_recs, rules,
                                          popular, catalog (Parquet)
    models/<version>/metrics.json         window, counts, parameters
    models/<version>/_SUCCESS             written last; models/LATEST then names it

The version is `<end date>-<fingerprint>`, the fingerprint hashing the landed data of the
window (manifest checksums) and the parameters: running the same night twice finds the
version already trained and does nothing.

Run with: shoprecs train --date 2024-01-30
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl.clean import read_clean
from models import als, fpgrowth, ids

log = logging.getLogger(__name__)
POPULAR_K = 100


def fingerprint(root: Path, start: dt.date, end: dt.date, params: dict) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    day = start
    while day <= end:
        manifest = root / "landing" / "orders" / f"dt={day.isoformat()}" / "_manifest.json"
        if manifest.exists():
            digest.update(f"{day}:{json.loads(manifest.read_text())['sha256']}".encode())
        day += dt.timedelta(1)
    return digest.hexdigest()[:10]


def popular(lines: DataFrame, k: int = POPULAR_K) -> DataFrame:
    """(goods_id, score, rank): goods bought in the most orders; score = share of orders."""
    n = max(lines.select("order_id").distinct().count(), 1)
    counts = lines.groupBy("goods_id").agg(F.countDistinct("order_id").alias("orders"))
    # k rows at most: ranking them on the driver beats a single-partition window.
    top = counts.orderBy(F.desc("orders"), "goods_id").limit(k).collect()
    rows = [(r["goods_id"], r["orders"] / n, rank) for rank, r in enumerate(top, 1)]
    return lines.sparkSession.createDataFrame(rows, "goods_id string, score double, rank int")


def _previous_mapping(spark: SparkSession, root: Path, kind: str) -> DataFrame | None:
    latest = root / "models" / "LATEST"
    if not latest.exists():
        return None
    return spark.read.parquet(str(root / "models" / latest.read_text().strip() / "ids" / kind))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(spark: SparkSession, settings, end: dt.date, als_params: als.ALSParams = als.ALSParams(),
        fp_params: fpgrowth.FPGrowthParams = fpgrowth.FPGrowthParams()) -> str:
    """Train both models on the window ending at `end`; return the model version."""
    root = settings.warehouse
    start = end - dt.timedelta(days=settings.train_window_days - 1)
    params = {"als": als_params.as_dict(), "fpgrowth": fp_params.as_dict(),
              "window": [start.isoformat(), end.isoformat()]}
    version = f"{end:%Y%m%d}-{fingerprint(root, start, end, params)}"
    out = root / "models" / version
    if (out / "_SUCCESS").exists():
        log.info("model %s already trained for this data and parameters; nothing to do", version)
        return version
    lines = read_clean(spark, root, start, end).cache()
    if lines.isEmpty():
        raise RuntimeError(f"no clean orders between {start} and {end}: run extract and clean")

    inter = als.interactions(lines, als_params.strength)
    users = ids.extend(_previous_mapping(spark, root, "users"), inter.select("user_key")).cache()
    items = ids.extend(_previous_mapping(spark, root, "items"), lines.select("goods_id")).cache()
    ratings = (inter.join(users.withColumnRenamed("key", "user_key"), "user_key")
               .withColumnRenamed("id", "user")
               .join(items.withColumnRenamed("key", "goods_id"), "goods_id")
               .withColumnRenamed("id", "item").select("user", "item", "strength"))
    log.info("training ALS %s on %d pairs", als_params, ratings.count())
    model = als.train(ratings, als_params)
    recs = als.recommend_all(model, als_params.top_k, users, items)

    basket_df = fpgrowth.baskets(lines).cache()
    n_baskets = basket_df.count()
    support = fp_params.support_for(n_baskets)
    log.info("training FP-Growth on %d baskets, minSupport %.4f", n_baskets, support)
    fp_model = fpgrowth.train(basket_df, support, fp_params)
    rules = fpgrowth.rules(fp_model)

    catalog = spark.read.parquet(str(root / "clean" / "goods"))
    results = out / "results"
    recs.write.mode("overwrite").parquet(str(results / "user_recs"))
    rules.write.mode("overwrite").parquet(str(results / "rules"))
    popular(lines).write.mode("overwrite").parquet(str(results / "popular"))
    catalog.write.mode("overwrite").parquet(str(results / "catalog"))
    users.write.mode("overwrite").parquet(str(out / "ids" / "users"))
    items.write.mode("overwrite").parquet(str(out / "ids" / "items"))
    model.write().overwrite().save(str(out / "als"))
    fp_model.write().overwrite().save(str(out / "fpgrowth"))

    metrics = {"version": version, "window": params["window"], "params": params,
               "trained_on": {"orders": n_baskets, "lines": lines.count(),
                              "shoppers": inter.select("user_key").distinct().count(),
                              "goods": lines.select("goods_id").distinct().count()},
               "fpgrowth": {"min_support": support,
                            "rules": spark.read.parquet(str(results / "rules")).count()}}
    _write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    _write_text(out / "_SUCCESS", "")
    _write_text(root / "models" / "LATEST", version)
    lines.unpersist()
    log.info("trained model %s: %s", version, metrics["trained_on"])
    return version
