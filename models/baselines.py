"""The baseline every model must beat, scored like models: (user_key, goods_id, score).

Popularity: the goods in the most orders, the same list for everyone. (The other baseline,
item-to-item co-occurrence, is the `items` component of models/hybrid.py measured alone.)
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def popularity(train: DataFrame, users: DataFrame, n: int = 200) -> DataFrame:
    """The n most-ordered goods of `train`, for every user of `users` (user_key)."""
    top = (train.groupBy("goods_id").agg(F.countDistinct("order_id").alias("score"))
           .orderBy(F.desc("score"), "goods_id").limit(n))
    return users.select("user_key").distinct().crossJoin(F.broadcast(top)).select(
        "user_key", "goods_id", F.col("score").cast("double"))
