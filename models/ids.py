"""Collision-free integer ids for ALS, persisted and extended from run to run.

ALS needs int32 user and item ids. A hash of the key collides; instead each run reads the
mapping of the previous model version, keeps every id it holds and numbers only the new
keys, after the current maximum, in sorted order. A shopper keeps the same id forever.
"""
from __future__ import annotations

import itertools

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

MAPPING_SCHEMA = StructType([StructField("key", StringType(), False),
                             StructField("id", IntegerType(), False)])
MAX_ID = 2**31 - 1  # ALS ids are int32


def extend(previous: DataFrame | None, keys: DataFrame) -> DataFrame:
    """`previous` (key, id) plus an id for every key of `keys` (one column) it lacks.

    Raises OverflowError, before anything is written, when the new keys would take an id
    past int32."""
    keys = keys.toDF("key").where(F.col("key").isNotNull()).distinct()
    if previous is None:
        previous = keys.sparkSession.createDataFrame([], MAPPING_SCHEMA)
    start = previous.agg(F.max("id")).first()[0]
    start = -1 if start is None else start
    new = keys.join(previous, "key", "left_anti").orderBy("key").rdd.map(lambda r: r[0])
    # RDD.zipWithIndex, with its per-partition count kept: that one job both places each
    # partition's first id and gives the total for the overflow check, where a count()
    # of the result would run the distinct, the anti join and the sort once more.
    sizes = new.mapPartitions(lambda rows: [sum(1 for _ in rows)]).collect()
    if start + sum(sizes) > MAX_ID:
        raise OverflowError(f"id mapping exceeds int32, which ALS requires: {sum(sizes)} new "
                            f"keys after id {start}")
    firsts = list(itertools.accumulate(sizes[:-1], initial=start + 1))

    def number(part, rows):
        return ((key, first) for first, key in enumerate(rows, firsts[part]))

    fresh = keys.sparkSession.createDataFrame(new.mapPartitionsWithIndex(number),
                                              MAPPING_SCHEMA)
    return previous.unionByName(fresh)
