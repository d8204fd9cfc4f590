"""The baseline every model must beat, scored like models: (user_key, goods_id, score).

Popularity: the goods in the most orders, the same list for everyone. (The other baseline,
item-to-item co-occurrence, is the `items` component of models/hybrid.py measured alone.)
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def most_ordered(lines: DataFrame, k: int, weight: Column | None = None) -> DataFrame:
    """(goods_id, orders): the k goods in the most orders of `lines`, most first, ties by
    goods_id; each order counting `weight` (a column of its lines, e.g. decayed by age)
    when given, else 1. At most k rows: callers that scale them collect them."""
    if weight is None:
        counted = lines.groupBy("goods_id").agg(F.countDistinct("order_id").alias("orders"))
    else:
        counted = (lines.select("goods_id", "order_id", weight.alias("weight")).distinct()
                   .groupBy("goods_id").agg(F.sum("weight").alias("orders")))
    return counted.orderBy(F.desc("orders"), "goods_id").limit(k)


def popularity(train: DataFrame, users: DataFrame, n: int = 200) -> DataFrame:
    """The n most-ordered goods of `train`, for every user of `users` (user_key)."""
    return users.select("user_key").distinct().crossJoin(F.broadcast(most_ordered(train, n))) \
        .select("user_key", "goods_id", F.col("orders").cast("double").alias("score"))
