"""ALS (implicit feedback) on purchases: "customers like you bought".

The strength of a (shopper, goods) pair is built from the clean order lines as configured
(`strength`): number of orders, summed quantity, log1p of the summed quantity, or 1.
Spark's implicit ALS turns it into confidence 1 + alpha * strength.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

STRENGTHS = ("count", "quantity", "log", "binary")


@dataclass(frozen=True)
class ALSParams:
    """ALS hyperparameters. The defaults won a search on the generated demo shop and are a
    sane start; `shoprecs tune` finds the shop's own (models/TUNED.json)."""

    rank: int = 32
    reg_param: float = 1.0
    alpha: float = 10.0
    max_iter: int = 10
    strength: str = "count"
    top_k: int = 50  # recommendations precomputed per shopper
    seed: int = 42
    blocks: int = 0  # user and item blocks; 0: the cluster's cores (defaultParallelism)

    def __post_init__(self):
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, not {self.strength!r}")


def interactions(lines: DataFrame, strength: str) -> DataFrame:
    """(user_key, goods_id, strength) from clean order lines of known shoppers."""
    grouped = lines.where(F.col("user_key").isNotNull()).groupBy("user_key", "goods_id").agg(
        F.countDistinct("order_id").alias("orders"), F.sum("quantity").alias("qty"))
    value = {"count": F.col("orders"), "quantity": F.col("qty"),
             "log": F.log1p(F.col("qty")), "binary": F.lit(1.0)}[strength]
    return grouped.select("user_key", "goods_id", value.cast("float").alias("strength"))


def ratings(lines: DataFrame, users: DataFrame, items: DataFrame, strength: str) -> DataFrame:
    """(user, item, strength) with the integer ids of the `users` and `items` mappings."""
    return (interactions(lines, strength)
            .join(users.select(F.col("key").alias("user_key"), F.col("id").alias("user")),
                  "user_key")
            .join(items.select(F.col("key").alias("goods_id"), F.col("id").alias("item")),
                  "goods_id")
            .select("user", "item", "strength"))


def train(ratings: DataFrame, params: ALSParams) -> ALSModel:
    """Fit on (user int, item int, strength)."""
    # Spark's default of 10 blocks each makes 2 cores shuffle 100 block pairs an iteration;
    # one block per core measured 25-45% faster on Online Retail (bench/RESULTS.md).
    blocks = params.blocks or max(2, ratings.sparkSession.sparkContext.defaultParallelism)
    als = ALS(rank=params.rank, regParam=params.reg_param, alpha=params.alpha,
              numUserBlocks=blocks, numItemBlocks=blocks, maxIter=params.max_iter,
              implicitPrefs=True, seed=params.seed,
              userCol="user", itemCol="item", ratingCol="strength",
              # Unknown ids at transform time get no prediction rather than NaN.
              coldStartStrategy="drop", nonnegative=False)
    return als.fit(ratings)


def recommend_users(model: ALSModel, subset: DataFrame, k: int, users: DataFrame,
                    items: DataFrame) -> DataFrame:
    """(user_key, goods_id, score, rank) for the shoppers of `subset` (column `user`): the
    top k by predicted score."""
    recs = model.recommendForUserSubset(subset, k).select(
        "user", F.posexplode("recommendations").alias("pos", "rec"))
    return (recs.join(users.withColumnRenamed("id", "user").withColumnRenamed("key", "user_key"),
                      "user")
            .join(items.select(F.col("id").alias("item"), F.col("key").alias("goods_id")),
                  F.col("rec.item") == F.col("item"))
            .select("user_key", "goods_id", F.col("rec.rating").cast("double").alias("score"),
                    (F.col("pos") + 1).alias("rank")))
