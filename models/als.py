"""ALS (implicit feedback) on purchases: "customers like you bought".

The strength of a (shopper, goods) pair is built from the clean order lines as configured
(`strength`): number of orders, summed quantity, log1p of the summed quantity, or 1.
Spark's implicit ALS turns it into confidence 1 + alpha * strength.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

STRENGTHS = ("count", "quantity", "log", "binary")


@dataclass(frozen=True)
class ALSParams:
    """ALS hyperparameters; the defaults suit tens of thousands of shoppers."""

    rank: int = 32
    reg_param: float = 0.1
    alpha: float = 10.0
    max_iter: int = 10
    strength: str = "log"
    top_k: int = 50  # recommendations precomputed per shopper
    seed: int = 42

    def __post_init__(self):
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, not {self.strength!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def interactions(lines: DataFrame, strength: str) -> DataFrame:
    """(user_key, goods_id, strength) from clean order lines of known shoppers."""
    grouped = lines.where(F.col("user_key").isNotNull()).groupBy("user_key", "goods_id").agg(
        F.countDistinct("order_id").alias("orders"), F.sum("quantity").alias("qty"))
    value = {"count": F.col("orders"), "quantity": F.col("qty"),
             "log": F.log1p(F.col("qty")), "binary": F.lit(1.0)}[strength]
    return grouped.select("user_key", "goods_id", value.cast("float").alias("strength"))


def train(ratings: DataFrame, params: ALSParams) -> ALSModel:
    """Fit on (user int, item int, strength)."""
    als = ALS(rank=params.rank, regParam=params.reg_param, alpha=params.alpha,
              maxIter=params.max_iter, implicitPrefs=True, seed=params.seed,
              userCol="user", itemCol="item", ratingCol="strength",
              # Unknown ids at transform time get no prediction rather than NaN.
              coldStartStrategy="drop", nonnegative=False)
    return als.fit(ratings)


def recommend_all(model: ALSModel, k: int, users: DataFrame, items: DataFrame) -> DataFrame:
    """(user_key, goods_id, score, rank) for every shopper: the top k by predicted score."""
    recs = model.recommendForAllUsers(k).select(
        "user", F.posexplode("recommendations").alias("pos", "rec"))
    return (recs.join(users.withColumnRenamed("id", "user").withColumnRenamed("key", "user_key"),
                      "user")
            .join(items.select(F.col("id").alias("item"), F.col("key").alias("goods_id")),
                  F.col("rec.item") == F.col("item"))
            .select("user_key", "goods_id", F.col("rec.rating").cast("double").alias("score"),
                    (F.col("pos") + 1).alias("rank")))
