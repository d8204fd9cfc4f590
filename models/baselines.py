"""The baseline every model must beat, scored like models: (user_key, goods_id, score).

Popularity: the goods in the most orders, the same list for everyone. (The other baseline,
item-to-item co-occurrence, is the `items` component of models/hybrid.py measured alone.)
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def most_ordered(lines: DataFrame, k: int) -> DataFrame:
    """(goods_id, orders): the k goods in the most orders of `lines`, most first, ties by
    goods_id. At most k rows: callers that scale them collect them."""
    return (lines.groupBy("goods_id").agg(F.countDistinct("order_id").alias("orders"))
            .orderBy(F.desc("orders"), "goods_id").limit(k))


def popularity(train: DataFrame, users: DataFrame, n: int = 200) -> DataFrame:
    """The n most-ordered goods of `train`, for every user of `users` (user_key)."""
    return users.select("user_key").distinct().crossJoin(F.broadcast(most_ordered(train, n))) \
        .select("user_key", "goods_id", F.col("orders").cast("double").alias("score"))
