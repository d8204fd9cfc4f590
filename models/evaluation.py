"""Ranking quality on a time-based holdout: one evaluator for every model and baseline.

Metrics at k, averaged over the shoppers who bought in both the training and the test
period: precision, recall, MAP (average precision normalized by min(|relevant|, k)),
NDCG (binary gain) and catalog coverage (share of the catalog in anyone's top k).

Two modes:
* `all`: relevant = everything the shopper bought in the test period;
* `new`: relevant = what they bought in the test period and never before, and goods they
  bought in training are removed from the recommendations before taking the top k.

The pure functions below define the metrics; `evaluate` computes the same numbers in
Spark for whole populations (tests check the two agree).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
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


def holdout_truth(train: DataFrame, test: DataFrame, mode: str) -> DataFrame:
    """(user_key, goods_id) relevant in the test period for shoppers seen in training."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    bought = train.select("user_key", "goods_id").distinct()
    known = bought.select("user_key").distinct()
    truth = test.where(F.col("user_key").isNotNull()).select("user_key", "goods_id").distinct()
    truth = truth.join(known, "user_key")
    if mode == "new":
        truth = truth.join(bought, ["user_key", "goods_id"], "left_anti")
    return truth


def top_k(recs: DataFrame, k: int, exclude: DataFrame | None = None) -> DataFrame:
    """(user_key, goods_id, rank) best k by score, after removing `exclude` pairs."""
    if exclude is not None:
        recs = recs.join(exclude.select("user_key", "goods_id").distinct(),
                         ["user_key", "goods_id"], "left_anti")
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "goods_id")
    return (recs.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
            .select("user_key", "goods_id", "rank"))


def evaluate(recs: DataFrame, train: DataFrame, test: DataFrame, k: int, mode: str,
             catalog_size: int) -> dict[str, float]:
    """Metrics@k of `recs` (user_key, goods_id, score) against the holdout, in `mode`."""
    truth = holdout_truth(train, test, mode).cache()
    n_relevant = truth.groupBy("user_key").agg(F.count("*").alias("n_rel"))
    ranked = top_k(recs.join(n_relevant.select("user_key"), "user_key"), k,
                   train if mode == "new" else None).cache()
    hits = ranked.join(truth, ["user_key", "goods_id"]).withColumn(
        "hits_so_far", F.row_number().over(Window.partitionBy("user_key").orderBy("rank")))
    per_user = hits.groupBy("user_key").agg(
        F.count("*").alias("hits"),
        F.sum(F.col("hits_so_far") / F.col("rank")).alias("ap_sum"),
        F.sum(1 / F.log2(F.col("rank") + 1)).alias("dcg"))
    users = n_relevant.join(per_user, "user_key", "left").fillna(0.0)
    kk = F.least(F.col("n_rel"), F.lit(k))
    # IDCG = sum_{i=1..m} 1/log2(i+1) for m = min(|relevant|, k): a lookup of k values.
    idcg = F.element_at(F.array(*[F.lit(sum(1 / math.log2(i + 1) for i in range(1, m + 1)))
                                  for m in range(1, k + 1)]), kk.cast("int"))
    row = users.agg(
        F.avg(F.col("hits") / k).alias("precision"),
        F.avg(F.col("hits") / F.col("n_rel")).alias("recall"),
        F.avg(F.col("ap_sum") / kk).alias("map"),
        F.avg(F.col("dcg") / idcg).alias("ndcg"),
        F.count("*").alias("users")).first()
    covered = ranked.select("goods_id").distinct().count()
    truth.unpersist()
    ranked.unpersist()
    return {"precision": row["precision"] or 0.0, "recall": row["recall"] or 0.0,
            "map": row["map"] or 0.0, "ndcg": row["ndcg"] or 0.0, "users": row["users"],
            "coverage": covered / catalog_size if catalog_size else 0.0}


def evaluate_modes(recs: DataFrame, train: DataFrame, test: DataFrame, k: int,
                   catalog_size: int) -> dict[str, dict[str, float]]:
    """`evaluate` in every mode, with `recs` cached once for all of them."""
    recs = recs.cache()
    try:
        return {mode: evaluate(recs, train, test, k, mode, catalog_size) for mode in MODES}
    finally:
        recs.unpersist()
