"""Ranking quality on a time-based holdout: one evaluator for every model and baseline.

Metrics at k, averaged over the shoppers who bought in both the training and the test
period: precision, recall, MAP (average precision normalized by min(|relevant|, k)),
NDCG (binary gain) and catalog coverage (share of the catalog in anyone's top k).

Two modes:
* `all`: relevant = everything the shopper bought in the test period;
* `new`: relevant = what they bought in the test period and never before, and goods they
  bought in training are removed from the recommendations before taking the top k.

`evaluate_many` computes them for whole populations, every model and mode in one pass, a
pandas task per block of shoppers (`evaluate_modes` is its view of one model); the tests
hold the textbook definitions, one shopper at a time, and check that every figure agrees
with them (tests/models/definitions.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from models._pandas import returns
from models.hybrid import bought_pairs

MODES = ("all", "new")
METRICS = ("precision", "recall", "map", "ndcg")
# What `_ranked_metrics` returns per block: a row of metrics per shopper, model and mode
# (goods_id null), and a row per goods in some model's top k (user_key and metrics null).
EVALUATED_SCHEMA = StructType([
    StructField("model", StringType()), StructField("mode", StringType()),
    StructField("user_key", StringType()), StructField("goods_id", StringType()),
    *(StructField(m, DoubleType()) for m in METRICS)])


def evaluate_modes(recs: DataFrame, train: DataFrame, test: DataFrame, k: int,
                   catalog_size: int) -> dict[str, dict[str, float]]:
    """{mode: metrics@k} of `recs` (user_key, goods_id, score) against the holdout."""
    return evaluate_many({"model": recs}, train, test, k, catalog_size)["model"]


def _ranked_metrics(k: int, modes: Sequence[str], names: Sequence[str]):
    """The pandas function of `evaluate_many`: one block of shoppers' rows in, the
    per-shopper metrics of every model and mode and the goods each model's top k holds
    out (EVALUATED_SCHEMA)."""
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # IDCG for m = 0..k relevant

    @returns(EVALUATED_SCHEMA)
    def compute(pdf):
        import pandas as pd

        kind = pdf["kind"].to_numpy()
        bought = pdf.loc[kind == "bought", ["user_key", "goods_id"]]

        def among(df, pairs):  # per row of df: is its (user_key, goods_id) one of `pairs`?
            return df.merge(pairs[["user_key", "goods_id"]], "left", ["user_key", "goods_id"],
                            indicator=True)["_merge"].eq("both").to_numpy()

        truth = pdf.loc[kind == "truth", ["user_key", "goods_id"]]
        truth = truth[truth["user_key"].isin(bought["user_key"])]  # shoppers seen before
        truth = truth.assign(old=among(truth, bought))  # bought before the cut
        recs = pdf.loc[kind == "recs", ["model", "user_key", "goods_id", "score"]]
        recs = recs.assign(old=among(recs, bought))
        out = []
        for mode in modes:
            relevant = truth if mode == "all" else truth[~truth["old"]]
            n_rel = relevant.groupby("user_key").size()
            if n_rel.empty:
                continue
            cand = recs[recs["user_key"].isin(n_rel.index)]
            if mode == "new":  # goods bought before leave the list before the top k
                cand = cand[~cand["old"]]
            cand = cand.sort_values(["model", "user_key", "score", "goods_id"],
                                    ascending=[True, True, False, True], na_position="last")
            rank = cand.groupby(["model", "user_key"], sort=False).cumcount().to_numpy() + 1
            top = cand.loc[rank <= k, ["model", "user_key", "goods_id"]].assign(
                rank=rank[rank <= k])
            hit = among(top, relevant)
            top = top.assign(hit=hit)
            top["hits_so_far"] = top.groupby(["model", "user_key"], sort=False)["hit"].cumsum()
            r = top["rank"].to_numpy()
            top["ap"] = np.where(hit, top["hits_so_far"] / r, 0.0)
            top["dcg"] = np.where(hit, discount[r - 1], 0.0)
            per = top.groupby(["model", "user_key"])[["hit", "ap", "dcg"]].sum()
            every = pd.MultiIndex.from_product([list(names), n_rel.index],
                                               names=["model", "user_key"])
            per = per.reindex(every, fill_value=0.0).reset_index()
            rel = n_rel.reindex(per["user_key"]).to_numpy().astype(float)
            hits = per["hit"].to_numpy(float)
            m = np.minimum(rel, k).astype(int)
            out.append(pd.DataFrame({
                "model": per["model"], "mode": mode, "user_key": per["user_key"],
                "goods_id": None,
                "precision": hits / k, "recall": hits / rel,
                "map": per["ap"].to_numpy(float) / m,
                "ndcg": per["dcg"].to_numpy(float) / ideal[m]}))
            covered = top[["model", "goods_id"]].drop_duplicates()
            out.append(pd.DataFrame({"model": covered["model"], "mode": mode,
                                     "user_key": None, "goods_id": covered["goods_id"]}))
        return pd.concat(out, ignore_index=True) if out else None
    return compute


def evaluate_many(models: dict[str, DataFrame], train: DataFrame, test: DataFrame, k: int,
                  catalog_size: int, modes: Sequence[str] = MODES
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {mode: metrics@k}} for every model's (user_key, goods_id, score), all of them
    in one pass: every model's lists, the test purchases and the training purchases meet in
    blocks of shoppers, one pandas task per block ranks and matches them
    (`_ranked_metrics`), and one aggregation averages the shoppers' metrics and counts the
    goods covered. Ties in score rank by goods_id, as everywhere in shoprecs.

    A nightly run measures several models in two modes; the same numbers from Spark windows
    and joins cost some fifty stages."""
    if not models:
        return {}
    return _averages(_per_shopper(models, train, test, k, modes), models, modes, catalog_size)


def evaluate_paired(models: dict[str, DataFrame], train: DataFrame, test: DataFrame, k: int,
                    catalog_size: int, metric: str, mode: str
                    ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """evaluate_many, and each model's `metric` in `mode` shopper by shopper, the shoppers in
    the same order for every model (what a paired comparison of two models resamples)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    rows = _per_shopper(models, train, test, k, MODES).cache()
    try:
        result = _averages(rows, models, MODES, catalog_size)
        values = (rows.where((F.col("mode") == mode) & F.col("user_key").isNotNull())
                  .select("model", "user_key", metric).toPandas())
    finally:
        rows.unpersist()
    table = values.pivot(index="user_key", columns="model", values=metric).sort_index()
    return result, {name: table[name].to_numpy(float) if name in table else np.zeros(0)
                    for name in models}


def _per_shopper(models: dict[str, DataFrame], train: DataFrame, test: DataFrame, k: int,
                 modes: Sequence[str]) -> DataFrame:
    """EVALUATED_SCHEMA rows of every model, in every mode."""
    bad = set(modes) - set(MODES)
    if bad:
        raise ValueError(f"mode must be one of {MODES}, not {sorted(bad)}")
    spark = train.sparkSession
    n_blocks = max(spark.sparkContext.defaultParallelism,
                   int(spark.conf.get("spark.sql.shuffle.partitions")))
    block = F.pmod(F.xxhash64("user_key"), F.lit(n_blocks)).alias("block")

    def tagged(df: DataFrame, kind: str) -> DataFrame:
        return df.select(block, F.lit(kind).alias("kind"),
                         F.lit(None).cast("string").alias("model"), "user_key", "goods_id",
                         F.lit(None).cast("double").alias("score"))

    truth = bought_pairs(test)
    rows = tagged(bought_pairs(train), "bought").unionByName(tagged(truth, "truth"))
    for name, recs in models.items():
        rows = rows.unionByName(recs.where(F.col("user_key").isNotNull()).select(
            block, F.lit("recs").alias("kind"), F.lit(name).alias("model"), "user_key",
            "goods_id", F.col("score").cast("double").alias("score")))
    # Every pair a block needs is its shoppers': training purchases of shoppers without a
    # test purchase are dropped before the shuffle.
    rows = rows.join(truth.select("user_key").distinct(), "user_key", "left_semi")
    return rows.groupBy("block").applyInPandas(
        _ranked_metrics(k, list(modes), list(models)), EVALUATED_SCHEMA)


def _averages(per_user: DataFrame, models, modes: Sequence[str], catalog_size: int) -> dict:
    found = per_user.groupBy("model", "mode").agg(
        *(F.avg(m).alias(m) for m in METRICS),
        F.count("precision").alias("users"), F.countDistinct("goods_id").alias("covered")
    ).collect()
    result = {name: {mode: {**dict.fromkeys(METRICS, 0.0), "users": 0, "coverage": 0.0}
                     for mode in modes} for name in models}
    for r in found:
        result[r["model"]][r["mode"]] = {
            **{m: r[m] or 0.0 for m in METRICS}, "users": r["users"],
            "coverage": r["covered"] / catalog_size if catalog_size else 0.0}
    return result
