"""Ranking quality on a time-based holdout: one evaluator for every model and baseline.

Metrics at k, averaged over the shoppers who bought in both the training and the test
period: precision, recall, MAP (average precision normalized by min(|relevant|, k)),
NDCG (binary gain) and catalog coverage (share of the catalog in anyone's top k).

Two modes:
* `all`: relevant = everything the shopper bought in the test period;
* `new`: relevant = what they bought in the test period and never before, and goods they
  bought in training are removed from the recommendations before taking the top k.

The pure functions below define the metrics; `evaluate_many` computes the same numbers
in Spark for whole populations, every model and mode in one pass (`evaluate` and
`evaluate_modes` are views of it; tests check they agree with the definitions).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

MODES = ("all", "new")


def precision_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    return sum(1 for item in recommended[:k] if item in relevant) / k


def recall_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in recommended[:k] if item in relevant) / len(relevant)


def average_precision_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k], 1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k) if relevant else 0.0


def ndcg_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    dcg = sum(1 / math.log2(rank + 1)
              for rank, item in enumerate(recommended[:k], 1) if item in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def evaluate(recs: DataFrame, train: DataFrame, test: DataFrame, k: int, mode: str,
             catalog_size: int) -> dict[str, float]:
    """Metrics@k of `recs` (user_key, goods_id, score) against the holdout, in `mode`."""
    return evaluate_many({"model": recs}, train, test, k, catalog_size, (mode,))["model"][mode]


def evaluate_modes(recs: DataFrame, train: DataFrame, test: DataFrame, k: int,
                   catalog_size: int) -> dict[str, dict[str, float]]:
    """`evaluate` in every mode."""
    return evaluate_many({"model": recs}, train, test, k, catalog_size)["model"]


def _idcg(k: int, relevant: Column) -> Column:
    """IDCG = sum_{i=1..m} 1/log2(i+1) for m = min(|relevant|, k): a lookup of k values."""
    return F.element_at(F.array(*[F.lit(sum(1 / math.log2(i + 1) for i in range(1, m + 1)))
                                  for m in range(1, k + 1)]), relevant.cast("int"))


def _modes(modes: Sequence[str]) -> Column:
    """A row per mode the (user_key, goods_id) pair takes part in (column `mode`): a pair
    bought before the cut (column `before` not null) is in mode `all` only."""
    old = [F.lit(m) for m in modes if m == "all"]
    return F.explode(F.when(F.col("before").isNull(), F.array(*map(F.lit, modes)))
                     .otherwise(F.array(*old) if old else F.array().cast("array<string>"))
                     ).alias("mode")


def evaluate_many(models: dict[str, DataFrame], train: DataFrame, test: DataFrame, k: int,
                  catalog_size: int, modes: Sequence[str] = MODES
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {mode: metrics@k}} for every model's (user_key, goods_id, score), all of them
    ranked, matched and averaged in one pass: two Spark jobs whatever the number of models
    (a nightly run measures four in two modes; one job per model and mode cost minutes)."""
    if not models:
        return {}
    bad = set(modes) - set(MODES)
    if bad:
        raise ValueError(f"mode must be one of {MODES}, not {sorted(bad)}")
    spark = train.sparkSession
    bought = (train.where(F.col("user_key").isNotNull()).select("user_key", "goods_id")
              .distinct().withColumn("before", F.lit(True)))
    known = bought.select("user_key").distinct()
    seen = (test.where(F.col("user_key").isNotNull()).select("user_key", "goods_id")
            .distinct().join(known, "user_key")
            .join(bought, ["user_key", "goods_id"], "left"))
    # The relevant pairs of every mode: all of the test purchases, and the new ones.
    truth = seen.select("user_key", "goods_id", _modes(modes)).persist()
    n_relevant = truth.groupBy("mode", "user_key").agg(F.count("*").alias("n_rel"))

    scored = None
    for name, recs in models.items():
        named = recs.select(F.lit(name).alias("model"), "user_key", "goods_id",
                            F.col("score").cast("double").alias("score"))
        scored = named if scored is None else scored.unionByName(named)
    # In mode new, goods bought before the cut leave the list before the top k is taken.
    candidates = (scored.join(n_relevant.select("user_key").distinct(), "user_key")
                  .join(bought, ["user_key", "goods_id"], "left")
                  .select("model", "user_key", "goods_id", "score", _modes(modes))
                  .join(n_relevant.select("mode", "user_key"), ["mode", "user_key"], "left_semi"))
    order = Window.partitionBy("model", "mode", "user_key").orderBy(F.desc("score"), "goods_id")
    ranked = (candidates.withColumn("rank", F.row_number().over(order))
              .where(F.col("rank") <= k).drop("score").persist())
    hits = ranked.join(truth, ["mode", "user_key", "goods_id"]).withColumn(
        "hits_so_far", F.row_number().over(
            Window.partitionBy("model", "mode", "user_key").orderBy("rank")))
    per_user = hits.groupBy("model", "mode", "user_key").agg(
        F.count("*").alias("hits"),
        F.sum(F.col("hits_so_far") / F.col("rank")).alias("ap_sum"),
        F.sum(1 / F.log2(F.col("rank") + 1)).alias("dcg"))
    names = spark.createDataFrame([(name,) for name in models], "model string")
    users = (n_relevant.crossJoin(F.broadcast(names))
             .join(per_user, ["model", "mode", "user_key"], "left")
             .fillna(0.0, ["hits", "ap_sum", "dcg"]))
    kk = F.least(F.col("n_rel"), F.lit(k))
    rows = users.groupBy("model", "mode").agg(
        F.avg(F.col("hits") / k).alias("precision"),
        F.avg(F.col("hits") / F.col("n_rel")).alias("recall"),
        F.avg(F.col("ap_sum") / kk).alias("map"),
        F.avg(F.col("dcg") / _idcg(k, kk)).alias("ndcg"),
        F.count("*").alias("users")).collect()
    covered = {(r["model"], r["mode"]): r["n"] for r in ranked.groupBy("model", "mode").agg(
        F.countDistinct("goods_id").alias("n")).collect()}
    truth.unpersist()
    ranked.unpersist()
    result = {name: {mode: {"precision": 0.0, "recall": 0.0, "map": 0.0, "ndcg": 0.0,
                            "users": 0, "coverage": 0.0} for mode in modes}
              for name in models}
    for r in rows:
        result[r["model"]][r["mode"]] = {
            "precision": r["precision"] or 0.0, "recall": r["recall"] or 0.0,
            "map": r["map"] or 0.0, "ndcg": r["ndcg"] or 0.0, "users": r["users"],
            "coverage": (covered.get((r["model"], r["mode"]), 0) / catalog_size
                         if catalog_size else 0.0)}
    return result
