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
import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from core.bus_profile import BusProfile
from core.errors import NoLandedData
from core.files import atomic_write
from core.phones import INVALID, PLACEHOLDER, PhoneRules, shopper_key

log = logging.getLogger(__name__)

# The landed basket (Spark DDL): numbers are read as text and cast line by line, so that
# one bad line does not make the whole order an unparseable record.
BASKET = "array<struct<goodsId: string, quantity: string, price: string>>"

CLEAN_ORDER_SCHEMA = StructType([
    StructField("order_id", StringType(), False),
    StructField("order_ts", TimestampType(), False),
    StructField("user_key", StringType(), True),
    StructField("source", StringType(), True),
    StructField("goods_id", StringType(), False),
    StructField("quantity", IntegerType(), False),
    StructField("price", DoubleType(), True),
])

# What read_clean reads: the written columns (`source` null for days cleaned before it
# existed), the catalog name and the landed day.
CLEAN_LINES_SCHEMA = StructType([*CLEAN_ORDER_SCHEMA, StructField("name", StringType()),
                                 StructField("dt", DateType())])

QUARANTINE_SCHEMA = "reason string, record string, dt string"

# The catalog's optional shop fields (docs/bus.md, "The contract"): absent `available` means
# available; a bus that sends only id and name gives null price and category.
GOODS_SCHEMA = "id string, name string, available boolean, price double, category string"


def phone_keys(rules: PhoneRules, hmac_keys, placeholders: str | None = None):
    """A pandas UDF: each phone as sent -> `core.phones.shopper_key` (the one definition of
    the normalization and the key): its user_key, None when blank, INVALID when no phone,
    PLACEHOLDER when its national number matches `placeholders` (a regular expression)."""
    placeholder = re.compile(placeholders).search if placeholders else None

    def key(raw: str | None) -> str | None:
        return shopper_key(raw, rules, hmac_keys, placeholder)

    @F.pandas_udf(StringType())
    def keys(phones: pd.Series) -> pd.Series:
        return phones.map(key, na_action="ignore")
    return keys


def order_times(profile: BusProfile):
    """A pandas UDF: each order's date field as sent -> its UTC time, by the profile's one
    reading (`core.bus_profile.BusProfile.order_time`); None when unreadable."""
    @F.pandas_udf(TimestampType())
    def times(values: pd.Series) -> pd.Series:
        parsed = values.map(profile.order_time, na_action="ignore")
        return pd.to_datetime(parsed, errors="coerce").dt.tz_localize("UTC")
    return times


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def transform(raw: DataFrame, *, rules: PhoneRules, hmac_key,
              profile: BusProfile = BusProfile(), placeholders: str | None = None,
              max_orders_per_day: int = 0) -> tuple[DataFrame, DataFrame]:
    """(clean order lines, quarantined records) from raw orders with `dt` and `_seq` columns
    (`read_raw`: the profile's fields under the contract's names, `date`, `clientTel` and
    `source`).

    `_seq` orders the records as the bus sent them; for a duplicated id the highest wins.
    Orders of a placeholder phone, or of a phone with more than `max_orders_per_day` orders
    on one day (0: no limit), are kept as guest orders and quarantined with the reason.
    """
    for name in ("source", "_user_key"):
        if name not in raw.columns:
            raw = raw.withColumn(name, F.lit(None).cast("string"))
    if profile.date_field:
        ts = order_times(profile)(F.col("date"))
        kind = {"iso": "ISO 8601", "epoch": "epoch seconds",
                "epoch_ms": "epoch milliseconds"}.get(profile.date_format, profile.date_format)
        field = "" if profile.date_field == "date" else f" ({profile.date_field})"
        undated = f"order date{field} missing or not {kind}"
    else:  # the bus filters by a date the orders do not carry: the day asked for
        ts = F.to_timestamp(F.col("dt"))
        undated = "order date missing"
    # an order past raw retention (privacy/) carries its key instead of the phone
    key = F.coalesce(F.col("_user_key"),
                     phone_keys(rules, hmac_key, placeholders)(F.col("clientTel")))
    orders = raw.withColumn("order_ts", ts).withColumn("key", key).withColumn(
        "reason",
        F.when(F.col("_corrupt_record").isNotNull(), "unparseable record")
        .when(_blank(F.col("id")), "order has no id")
        .when(F.col("order_ts").isNull(), undated)
        .when(F.col("key") == INVALID, "invalid phone number")
        .when(F.coalesce(F.size("basket"), F.lit(0)) <= 0, "empty basket"))
    masked = F.to_json(F.struct("id", "date", F.lit("<masked>").alias("clientTel"), "basket"))
    bad_orders = orders.where(F.col("reason").isNotNull()).select(
        "dt", "reason", F.coalesce("_corrupt_record", masked).alias("record"))
    # Within a landed day the version sent last wins; across days, see read_clean().
    latest = Window.partitionBy("dt", "id").orderBy(F.col("_seq").desc())
    good = (orders.where(F.col("reason").isNull())
            .withColumn("_n", F.row_number().over(latest)).where("_n = 1"))
    guest = F.when(F.col("key") == PLACEHOLDER,
                   "placeholder phone (phone.placeholders): kept as a guest order")
    if max_orders_per_day > 0:
        per_day = Window.partitionBy("key", F.to_date("order_ts"))
        many = F.when(F.col("key").isNull() | (F.col("key") == PLACEHOLDER), 0).otherwise(
            F.count("*").over(per_day))
        good = good.withColumn("_many", many)
        guest = guest.when(F.col("_many") > max_orders_per_day, F.concat(
            F.lit("a phone with "), F.col("_many").cast("string"), F.lit(
                f" orders on one day (over phone.max_orders_per_day {max_orders_per_day}): "
                "kept as a guest order")))
    good = good.withColumn("guest", guest)
    guests = good.where(F.col("guest").isNotNull()).select(
        "dt", F.col("guest").alias("reason"), masked.alias("record"))
    lines = good.select(
        "dt", F.col("id").alias("order_id"), "order_ts",
        F.when(F.col("guest").isNull(), F.col("key")).alias("user_key"), "source",
        F.explode("basket").alias("line"))
    lines = lines.withColumn("qty", F.col("line.quantity").try_cast("int")).withColumn(
        "reason",
        F.when(_blank(F.col("line.goodsId")), "line has no goodsId")
        .when(F.col("qty").isNull(), "line quantity missing or not an integer")
        .when(F.col("qty") <= 0, "quantity <= 0 (return or cancellation)"))
    bad_lines = lines.where(F.col("reason").isNotNull()).select(
        "dt", "reason", F.to_json(F.struct("order_id", "line")).alias("record"))
    clean = (lines.where(F.col("reason").isNull())
             .groupBy("dt", "order_id", "order_ts", "user_key", "source",
                      F.trim("line.goodsId").alias("goods_id"))
             .agg(F.sum("qty").cast("int").alias("quantity"),
                  F.max(F.col("line.price").try_cast("double")).alias("price")))
    return clean, bad_orders.unionByName(bad_lines).unionByName(guests)


def with_names(lines: DataFrame, catalog: DataFrame) -> DataFrame:
    """Order lines with the goods name from the catalog (null for goods it lacks)."""
    return lines.join(F.broadcast(catalog.select("goods_id", "name")), "goods_id", "left")


def clean_orders(root: Path) -> Path:
    """clean/orders; NoLandedData when nothing was ever cleaned there."""
    folder = root / "clean" / "orders"
    if not folder.is_dir():
        raise NoLandedData(f"no clean orders at {folder}: run `shoprecs clean --from D --to D` "
                           "for the days to train on first (or `shoprecs run`)")
    return folder


def read_clean(spark: SparkSession, root: Path, start: dt.date | None,
               end: dt.date) -> DataFrame:
    """Clean lines of the orders dated start..end (start None: every day up to end), each
    order once and in its own day (`dt`, UTC), whatever day it landed on (`landed`): an
    order landed on several days (listed twice, listed late, fetched again by the lookback)
    counts in the version landed last. clean/orders is stored by the day each order
    landed, so every landed day is cleaned (and re-cleaned) on its own. Every reader of
    clean/ uses this."""
    lines = spark.read.schema(CLEAN_LINES_SCHEMA).parquet(str(clean_orders(root)))
    if start is not None:  # an order lands on its day or later, never before
        lines = lines.where(F.col("dt") >= F.lit(start))
    lines = (lines.withColumn("_last", F.max("dt").over(Window.partitionBy("order_id")))
             .where(F.col("dt") == F.col("_last")).drop("_last")
             .withColumnRenamed("dt", "landed").withColumn("dt", F.to_date("order_ts")))
    return lines.where(F.col("dt") <= F.lit(end) if start is None
                       else F.col("dt").between(F.lit(start), F.lit(end)))


def read_quarantine(spark: SparkSession, root: Path) -> DataFrame:
    """Every quarantined record (reason, record, dt); empty if nothing was ever rejected."""
    return spark.read.schema(QUARANTINE_SCHEMA).json(str(root / "quarantine"))


def landed_paths(root: Path, days: list[dt.date]) -> list[str]:
    """The landed orders of `days`; NoLandedData names the first day not landed."""
    paths = []
    for day in days:
        path = root / "landing" / "orders" / f"dt={day.isoformat()}"
        if not (path / "_manifest.json").exists():
            raise NoLandedData(f"no landed orders for {day} at {path}: run `shoprecs "
                               f"extract --date {day}` first")
        paths.append(str(path / "orders.jsonl"))
    return paths


def raw_schema(profile: BusProfile) -> str:
    """The landed JSON's schema (Spark DDL) under the profile's field names."""
    as_text = dict.fromkeys([profile.date_field, profile.phone_field, profile.source_field,
                             "_user_key", "_corrupt_record"])
    return ", ".join(["id string", f"basket {BASKET}"]
                     + [f"`{name}` string" for name in as_text if name])


RAW_ORDER_SCHEMA = raw_schema(BusProfile())  # the landed JSON under the default profile


def read_raw(spark: SparkSession, root: Path, days: list[dt.date],
             profile: BusProfile = BusProfile()) -> DataFrame:
    """Landed orders with the contract's column names (`date`, `clientTel`, `source`,
    from the profile's), `dt` (the landed day) and `_seq` (the order sent)."""
    base = str(root / "landing" / "orders")
    raw = (spark.read.schema(raw_schema(profile)).option("mode", "PERMISSIVE")
           .option("basePath", base).json(landed_paths(root, days)))
    named = {"date": profile.date_field, "clientTel": profile.phone_field,
             "source": profile.source_field}
    return raw.select(
        "id", *(F.col(f"`{field}`").alias(name) if field else F.lit(None).cast("string")
                .alias(name) for name, field in named.items()),
        "basket", "_user_key", "_corrupt_record", "dt").withColumn(
        "_seq", F.monotonically_increasing_id()).withColumn("dt", F.col("dt").cast("string"))


def clean_goods(spark: SparkSession, root: Path, end: dt.date) -> DataFrame:
    """The catalog as last landed on or before `end`: one row per goods id (name,
    available, price, category), from the latest day that lists it."""
    base = root / "landing" / "goods"
    days = sorted(p.name[3:] for p in base.glob("dt=*") if p.name[3:] <= end.isoformat())
    if not days:  # /goods never answered: goods stay nameless, recommendations do not wait
        log.warning("no goods catalog landed on or before %s under %s: goods have no names "
                    "until one is (shoprecs extract pulls /goods)", end, base)
        return spark.createDataFrame([], "goods_id string, name string, available boolean, "
                                         "price double, category string")
    goods = (spark.read.schema(GOODS_SCHEMA).option("basePath", str(base))
             .json([str(base / f"dt={d}") for d in days]))
    latest = Window.partitionBy("id").orderBy(F.col("dt").desc())
    return (goods.where(F.col("id").isNotNull())
            .withColumn("_n", F.row_number().over(latest)).where("_n = 1")
            .select(F.col("id").alias("goods_id"), "name",
                    F.coalesce("available", F.lit(True)).alias("available"), "price",
                    F.nullif(F.trim("category"), F.lit("")).alias("category")))


def _replacing_days(df: DataFrame):
    """A writer of `df` by day (`dt`) that replaces exactly the days `df` holds."""
    return (df.repartition("dt").write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic").partitionBy("dt"))


def run(spark: SparkSession, settings, start: dt.date, end: dt.date) -> dict:
    """Clean the landed days start..end; replace exactly those days in clean/ and quarantine/.

    The landed JSON is parsed once and kept (memory, spilling to disk) for both outputs; the
    statistics are counted from the cached rows just written, not by reading them back."""
    from etl.bus import days as day_range

    root = settings.root
    rules = PhoneRules.from_settings(settings.phone)
    profile = BusProfile.from_settings(settings.bus)
    for leftover in [*root.glob("clean/orders/.spark-staging-*"),
                     *root.glob("quarantine/.spark-staging-*")]:
        shutil.rmtree(leftover, ignore_errors=True)  # of a run killed while writing
    raw = read_raw(spark, root, day_range(start, end), profile).persist()
    clean, bad = transform(raw, rules=rules, hmac_key=settings.privacy.keys,
                           profile=profile, placeholders=settings.phone.placeholders or None,
                           max_orders_per_day=settings.phone.max_orders_per_day)
    catalog = clean_goods(spark, root, end).persist()
    clean = with_names(clean, catalog).persist()
    bad = bad.persist()
    try:
        _replacing_days(clean).parquet(str(root / "clean" / "orders"))
        _replacing_days(bad).json(str(root / "quarantine"))
        catalog.write.mode("overwrite").parquet(str(root / "clean" / "goods"))
        mark_cleaned(root, *(x for day in day_range(start, end) for x in (
            day.isoformat(), json.loads((root / "landing" / "orders" / f"dt={day}" /
                                         "_manifest.json").read_text())["sha256"])))
        moved = F.when(F.to_date("order_ts").cast("string") != F.col("dt"), F.col("order_id"))
        stats = clean.agg(F.count("*").alias("lines"),
                          F.count_distinct("order_id").alias("orders"),
                          F.count_distinct(moved).alias("orders_of_another_day"),
                          F.count_if(F.col("name").isNull()).alias("lines_without_catalog_name"),
                          ).first().asDict()
        stats["quarantined"] = bad.count()
        if stats["orders_of_another_day"]:
            log.info("%d orders landed on another day than their own: each counts in its "
                     "own day (read_clean)", stats["orders_of_another_day"])
    finally:
        for df in (clean, bad, catalog, raw):
            df.unpersist()
    log.info("cleaned %s..%s: %s", start, end, stats)
    return stats


CLEANED = Path("clean") / "_cleaned.json"


def cleaned_days(root: Path) -> dict[str, str]:
    """day -> the sha256 of the landed file the cleaning job last cleaned for it."""
    try:
        return json.loads((root / CLEANED).read_text())
    except (OSError, ValueError):
        return {}


def mark_cleaned(root: Path, *days_and_hashes) -> None:
    """Record that the landed days (day, sha256 pairs) were cleaned as they are."""
    done = cleaned_days(root)
    pairs = iter(days_and_hashes)
    done.update(zip(pairs, pairs, strict=True))
    atomic_write(root / CLEANED, json.dumps(done, indent=0, sort_keys=True))
