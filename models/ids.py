"""Collision-free integer ids for ALS, persisted and extended from run to run.

ALS needs int32 user and item ids. A hash of the key collides; instead each run reads the
mapping of the previous model version, keeps every id it holds and numbers only the new
keys, after the current maximum, in sorted order. A shopper keeps the same id forever.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

MAPPING_SCHEMA = StructType([StructField("key", StringType(), False),
                             StructField("id", IntegerType(), False)])


def extend(previous: DataFrame | None, keys: DataFrame) -> DataFrame:
    """`previous` (key, id) plus an id for every key of `keys` (one column) it lacks."""
    keys = keys.toDF("key").where(F.col("key").isNotNull()).distinct()
    if previous is None:
        previous = keys.sparkSession.createDataFrame([], MAPPING_SCHEMA)
    start = previous.agg(F.max("id")).first()[0]
    start = -1 if start is None else start
    new = keys.join(previous, "key", "left_anti").orderBy("key")
    numbered = new.rdd.map(lambda r: r[0]).zipWithIndex().map(
        lambda kv: (kv[0], int(start + 1 + kv[1])))
    fresh = keys.sparkSession.createDataFrame(numbered, MAPPING_SCHEMA)
    mapping = previous.unionByName(fresh)
    if start + 1 + fresh.count() > 2**31 - 1:
        raise OverflowError("id mapping exceeds int32, which ALS requires")
    return mapping
