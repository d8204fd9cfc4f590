"""Spark cleaning: landed raw orders -> clean/orders (one row per order line) + quarantine/.

For each landed day it:
* quarantines, with the reason, every record it cannot use: unparseable JSON, no id or
  date, a phone that is not a phone, an empty basket, lines without goods or with
  quantity <= 0 (returns and cancellations: we train on what shoppers kept);
* keeps orders without a phone (guest checkouts) with user_key null: they still count as
  baskets for FP-Growth;
* removes duplicate orders (same id), the one sent last winning;
* replaces the phone by `user_key`, the HMAC-SHA256 of the normalized phone: Spark calls
  `core.phones` (one pandas task per partition), the very code the service keys lookups
  with, so the two can never disagree.
Writing replaces exactly the days processed (dynamic partition overwrite).

Run with: shoprecs clean --date 2024-01-30   (or --from 2024-01-01 --to 2024-01-30)
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from core.phones import InvalidPhone, PhoneRules, normalize, user_key

log = logging.getLogger(__name__)

RAW_ORDER_SCHEMA = StructType([
    StructField("id", StringType()),
    StructField("date", StringType()),
    StructField("clientTel", StringType()),
    StructField("basket", ArrayType(StructType([
        # Numbers are read as text and cast line by line: one bad line must not make the
        # whole order an unparseable record.
        StructField("goodsId", StringType()),
        StructField("quantity", StringType()),
        StructField("price", StringType()),
    ]))),
    StructField("_corrupt_record", StringType()),
])

CLEAN_ORDER_SCHEMA = StructType([
    StructField("order_id", StringType(), False),
    StructField("order_ts", TimestampType(), False),
    StructField("user_key", StringType(), True),
    StructField("goods_id", StringType(), False),
    StructField("quantity", IntegerType(), False),
    StructField("price", DoubleType(), True),
])

QUARANTINE_SCHEMA = StructType([StructField("reason", StringType()),
                                StructField("record", StringType()),
                                StructField("dt", StringType())])

# The catalog's optional shop fields (DESIGN.md): absent `available` means available; a
# bus that sends only id and name gives null price and category.
GOODS_SCHEMA = StructType([StructField("id", StringType()), StructField("name", StringType()),
                           StructField("available", BooleanType()),
                           StructField("price", DoubleType()),
                           StructField("category", StringType())])


INVALID = ""  # what phone_keys gives a phone that breaks the rules (a key is 64 hex digits)


def phone_keys(rules: PhoneRules, hmac_key: str):
    """A pandas UDF: each phone as sent -> its `core.phones.user_key` (the one definition
    of both the normalization and the key), None when blank, INVALID when no phone."""
    def key(raw: str | None) -> str | None:
        if raw is None or not raw.strip(" "):
            return None
        try:
            return user_key(normalize(raw, rules), hmac_key)
        except InvalidPhone:
            return INVALID

    @F.pandas_udf(StringType())
    def keys(phones: pd.Series) -> pd.Series:
        return phones.map(key, na_action="ignore")
    return keys


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def transform(raw: DataFrame, *, rules: PhoneRules, hmac_key: str) -> tuple[DataFrame, DataFrame]:
    """(clean order lines, quarantined records) from raw orders with `dt` and `_seq` columns.

    `_seq` orders the records as the bus sent them; for a duplicated id the highest wins.
    """
    ts = F.try_to_timestamp(F.col("date"))
    key = phone_keys(rules, hmac_key)(F.col("clientTel"))
    orders = raw.withColumn("order_ts", ts).withColumn("key", key).withColumn(
        "reason",
        F.when(F.col("_corrupt_record").isNotNull(), "unparseable record")
        .when(_blank(F.col("id")), "order has no id")
        .when(F.col("order_ts").isNull(), "order date missing or not ISO 8601")
        .when(F.col("key") == INVALID, "invalid phone number")
        .when(F.coalesce(F.size("basket"), F.lit(0)) <= 0, "empty basket"))
    bad_orders = orders.where(F.col("reason").isNotNull()).select(
        "dt", "reason", F.coalesce("_corrupt_record", F.to_json(F.struct(
            "id", "date", F.lit("<masked>").alias("clientTel"), "basket"))).alias("record"))
    # Within a landed day the version sent last wins; across days, see read_clean().
    latest = Window.partitionBy("dt", "id").orderBy(F.col("_seq").desc())
    good = (orders.where(F.col("reason").isNull())
            .withColumn("_n", F.row_number().over(latest)).where("_n = 1"))
    lines = good.select(
        "dt", F.col("id").alias("order_id"), "order_ts",
        F.col("key").alias("user_key"),
        F.explode("basket").alias("line"))
    lines = lines.withColumn("qty", F.col("line.quantity").try_cast("int")).withColumn(
        "reason",
        F.when(_blank(F.col("line.goodsId")), "line has no goodsId")
        .when(F.col("qty").isNull(), "line quantity missing or not an integer")
        .when(F.col("qty") <= 0, "quantity <= 0 (return or cancellation)"))
    bad_lines = lines.where(F.col("reason").isNotNull()).select(
        "dt", "reason", F.to_json(F.struct("order_id", "line")).alias("record"))
    clean = (lines.where(F.col("reason").isNull())
             .groupBy("dt", "order_id", "order_ts", "user_key",
                      F.trim("line.goodsId").alias("goods_id"))
             .agg(F.sum("qty").cast("int").alias("quantity"),
                  F.max(F.col("line.price").try_cast("double")).alias("price")))
    return clean, bad_orders.unionByName(bad_lines)


def with_names(lines: DataFrame, catalog: DataFrame) -> DataFrame:
    """Order lines with the goods name from the catalog (null for goods it lacks)."""
    return lines.join(F.broadcast(catalog.select("goods_id", "name")), "goods_id", "left")


def read_clean(spark: SparkSession, root: Path, start: dt.date | None,
               end: dt.date) -> DataFrame:
    """Clean lines of start..end (start None: every day up to end), each order once: an order
    landed on several days (the bus lists some twice) counts in its latest day's version.
    Every reader of clean/ uses this."""
    day = F.col("dt").cast("string")
    lines = spark.read.parquet(str(root / "clean" / "orders")).where(
        day <= end.isoformat() if start is None else day.between(start.isoformat(),
                                                                  end.isoformat()))
    latest = Window.partitionBy("order_id")
    return (lines.withColumn("_last", F.max("dt").over(latest))
            .where(F.col("dt") == F.col("_last")).drop("_last"))


def read_quarantine(spark: SparkSession, root: Path) -> DataFrame:
    """Every quarantined record (reason, record, dt); empty if nothing was ever rejected."""
    return spark.read.schema(QUARANTINE_SCHEMA).json(str(root / "quarantine"))


def _landed_days(root: Path, days: list[dt.date]) -> list[str]:
    paths = []
    for day in days:
        path = root / "landing" / "orders" / f"dt={day.isoformat()}"
        if not (path / "_manifest.json").exists():
            raise FileNotFoundError(
                f"no landed orders for {day} at {path}: run `shoprecs extract --date {day}`")
        paths.append(str(path / "orders.jsonl"))
    return paths


def read_raw(spark: SparkSession, root: Path, days: list[dt.date]) -> DataFrame:
    base = str(root / "landing" / "orders")
    raw = (spark.read.schema(RAW_ORDER_SCHEMA).option("mode", "PERMISSIVE")
           .option("basePath", base).json(_landed_days(root, days)))
    return raw.withColumn("_seq", F.monotonically_increasing_id()).withColumn(
        "dt", F.col("dt").cast("string"))


def clean_goods(spark: SparkSession, root: Path, end: dt.date) -> DataFrame:
    """The catalog as last landed on or before `end`: one row per goods id (name,
    available, price, category), from the latest day that lists it."""
    base = root / "landing" / "goods"
    days = sorted(p.name[3:] for p in base.glob("dt=*") if p.name[3:] <= end.isoformat())
    if not days:
        raise FileNotFoundError(f"no goods catalog landed on or before {end} under {base}")
    goods = (spark.read.schema(GOODS_SCHEMA).option("basePath", str(base))
             .json([str(base / f"dt={d}") for d in days]))
    latest = Window.partitionBy("id").orderBy(F.col("dt").desc())
    return (goods.where(F.col("id").isNotNull())
            .withColumn("_n", F.row_number().over(latest)).where("_n = 1")
            .select(F.col("id").alias("goods_id"), "name",
                    F.coalesce("available", F.lit(True)).alias("available"), "price",
                    F.nullif(F.trim("category"), F.lit("")).alias("category")))


def run(spark: SparkSession, settings, start: dt.date, end: dt.date) -> dict:
    """Clean the landed days start..end; replace exactly those days in clean/ and quarantine/.

    The landed JSON is parsed once and kept (memory, spilling to disk) for both outputs; the
    statistics are counted from the cached rows just written, not by reading them back."""
    from etl.bus import days as day_range

    root = settings.warehouse
    rules = PhoneRules(settings.phone_country_code, settings.phone_trunk_prefix,
                       settings.phone_national_length)
    raw = read_raw(spark, root, day_range(start, end)).persist()
    clean, bad = transform(raw, rules=rules, hmac_key=settings.privacy_hmac_key)
    catalog = clean_goods(spark, root, end).persist()
    clean = with_names(clean, catalog).persist()
    bad = bad.persist()
    try:
        (clean.repartition("dt").write.mode("overwrite")
         .option("partitionOverwriteMode", "dynamic")
         .partitionBy("dt").parquet(str(root / "clean" / "orders")))
        (bad.repartition("dt").write.mode("overwrite")
         .option("partitionOverwriteMode", "dynamic")
         .partitionBy("dt").json(str(root / "quarantine")))
        catalog.write.mode("overwrite").parquet(str(root / "clean" / "goods"))
        counts = clean.agg(F.count("*").alias("lines"),
                           F.countDistinct("order_id").alias("orders"),
                           F.count_if(F.col("name").isNull()).alias("unnamed")).first()
        stats = {"lines": counts["lines"], "orders": counts["orders"],
                 "quarantined": bad.count(),
                 "lines_without_catalog_name": counts["unnamed"]}
    finally:
        for df in (clean, bad, catalog, raw):
            df.unpersist()
    log.info("cleaned %s..%s: %s", start, end, stats)
    return stats
