"""The floor under the nightly pipeline's wall time: the least a night could do, as a tutorial
would write it, in the same cold JVM and on the same cores as the product's night.

`bench.scale --floor` runs this instead of the product's train step, after the product's
own clean (the same 304-day backfill): three Spark jobs side by side from three threads,
as the product runs its parts,

* the final ALS fit (the product's parameters) and every shopper's top 50, written;
* a holdout ALS fit on the days before the last 7 and one figure, ALS's precision@10 on
  the shoppers who bought on both sides of the cut;
* FP-Growth on the baskets of at most 100 goods (the product's support), its rules written.

Everything the product adds is left out: the id mappings kept from night to night, the
hybrid and its item kNN, similar and popular goods, the baselines and the second mode of
the evaluation, model saves, metrics, the report, the gate and publishing. Whatever the
floor takes, the product's night cannot take less on this machine.

Run with: .venv/bin/python -m bench.scale --real --scales --floor
"""
from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyspark.ml.fpm import FPGrowth
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from models.als import ALSParams

HOLDOUT_DAYS = 7
TOP_K = 50
MAX_BASKET_ITEMS = 100
MIN_SUPPORT = 0.0035  # what the product derives for Online Retail (bench-fpgrowth)


def _fit(ratings: DataFrame):
    p = ALSParams()
    return ALS(rank=p.rank, regParam=p.reg_param, alpha=p.alpha, maxIter=p.max_iter,
               implicitPrefs=True, seed=p.seed, numUserBlocks=2, numItemBlocks=2,
               userCol="user", itemCol="item", ratingCol="strength").fit(ratings)


def _dense_ids(keys: DataFrame, name: str) -> DataFrame:
    """(key column, int id): the tutorial's numbering, rebuilt every night."""
    return keys.distinct().rdd.map(lambda r: r[0]).zipWithIndex().toDF([keys.columns[0], name])


def night(spark: SparkSession, root: Path, end: dt.date) -> dict:
    """Train the floor's three parts on root/clean/orders; return {part: seconds} and the
    holdout's precision@10."""
    cut = (end - dt.timedelta(HOLDOUT_DAYS - 1)).isoformat()
    lines = spark.read.parquet(str(root / "clean" / "orders")).cache()
    pairs = (lines.where(F.col("user_key").isNotNull()).groupBy("user_key", "goods_id")
             .agg(F.countDistinct("order_id").cast("float").alias("strength"),
                  F.min(F.col("dt").cast("string")).alias("first")))
    users = _dense_ids(pairs.select("user_key"), "user")
    items = _dense_ids(pairs.select("goods_id"), "item")
    ratings = (pairs.join(users, "user_key").join(items, "goods_id")
               .select(F.col("user").cast("int"), F.col("item").cast("int"), "strength",
                       "first").cache())
    seconds: dict = {}

    def timed(part, fn):
        started = time.perf_counter()
        result = fn()
        seconds[part] = round(time.perf_counter() - started, 1)
        return result

    def final():
        model = _fit(ratings)
        model.recommendForAllUsers(TOP_K).write.mode("overwrite").parquet(
            str(root / "floor" / "user_recs"))

    def holdout():
        before = ratings.where(F.col("first") < cut)
        after = (lines.where(F.col("dt").cast("string") >= cut).join(users, "user_key")
                 .join(items, "goods_id").select(F.col("user").cast("int"),
                                                 F.col("item").cast("int")).distinct())
        shoppers = after.select("user").distinct().join(before.select("user").distinct(),
                                                        "user").cache()
        top = _fit(before).recommendForUserSubset(shoppers, 10).select(
            "user", F.explode("recommendations.item").alias("item"))
        hits = top.join(after, ["user", "item"]).count()
        return hits / max(10 * shoppers.count(), 1)

    def rules():
        baskets = (lines.groupBy("order_id").agg(F.collect_set("goods_id").alias("items"))
                   .where(F.size("items") <= MAX_BASKET_ITEMS))
        FPGrowth(itemsCol="items", minSupport=MIN_SUPPORT, minConfidence=0.05).fit(
            baskets).associationRules.write.mode("overwrite").parquet(
                str(root / "floor" / "rules"))

    with ThreadPoolExecutor(3, thread_name_prefix="floor") as pool:
        running = {part: pool.submit(timed, part, fn)
                   for part, fn in (("final ALS", final), ("holdout ALS", holdout),
                                    ("FP-Growth", rules))}
        precision = running["holdout ALS"].result()
        for future in running.values():
            future.result()
    for df in (ratings, lines):
        df.unpersist()
    return {**seconds, "precision@10": round(precision, 4)}
