import datetime as dt
import json

import pytest
from pyspark.testing import assertSchemaEqual

from core.phones import user_key
from etl import clean
from tests.conftest import TEST_KEY, order

pytestmark = pytest.mark.spark
DAY = dt.date(2024, 3, 1)


def land(root, day, records, goods=({"id": 1, "name": "Mug"},)):
    """Write raw bus records (dicts, or strings taken as raw lines) as extract would."""
    folder = root / "landing" / "orders" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (folder / "orders.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "_manifest.json").write_text(json.dumps({"sha256": str(hash(tuple(lines)))}))
    gfolder = root / "landing" / "goods" / f"dt={day}"
    gfolder.mkdir(parents=True, exist_ok=True)
    (gfolder / "goods.jsonl").write_text("\n".join(json.dumps(g) for g in goods) + "\n")


RECORDS = [
    order(1, "2024-03-01T09:00:00", "+7(916)539-6205", (10, 1), (11, 2)),
    order(2, "2024-03-01T10:00:00", "+7 (916) 539-6205", (12, 1)),
    order(3, "2024-03-01T11:00:00", "79165396205", (10, 1)),
    order(4, "2024-03-01T12:00:00", "89165396205", (13, 1), (14, -1)),
    order(2, "2024-03-01T10:00:00", "+7 (916) 539-6205", (12, 3)),  # re-sent: wins
    order(5, "2024-03-01T13:00:00", None, (10, 1)),  # guest
    order(6, "2024-03-01T14:00:00", "call me maybe", (10, 1)),
    order(7, "not a date", "79165396205", (10, 1)),
    order(8, "2024-03-01T15:00:00", "79165396205"),
    '{"id": 9, "date": "2024-03-01T16:00:00", "basket": [{"goodsId": 1, "quan',
]


def test_clean_normalizes_dedups_and_quarantines(spark, settings):
    land(settings.root, DAY, RECORDS, goods=[{"id": 10, "name": "Mug"},
                                                  {"id": 11, "name": "Saucer"}])
    stats = clean.run(spark, settings, DAY, DAY)
    lines = spark.read.parquet(str(settings.root / "clean" / "orders"))
    rows = {(r.order_id, r.goods_id): r for r in lines.collect()}
    assert set(rows) == {("1", "10"), ("1", "11"), ("2", "12"), ("3", "10"), ("4", "13"),
                         ("5", "10")}
    assert rows[("2", "12")].quantity == 3  # the re-sent version won, the first is gone
    shopper = user_key("79165396205", TEST_KEY)
    assert {r.user_key for k, r in rows.items() if k[0] != "5"} == {shopper}
    assert rows[("5", "10")].user_key is None
    assert stats == {"lines": 6, "orders": 5, "quarantined": 5, "orders_of_another_day": 0,
                     "lines_without_catalog_name": 2}
    assert rows[("1", "11")].name == "Saucer" and rows[("2", "12")].name is None
    quarantined = clean.read_quarantine(spark, settings.root).collect()
    reasons = sorted(r.reason for r in quarantined)
    assert reasons == ["empty basket", "invalid phone number", "order date missing or not ISO 8601",
                       "quantity <= 0 (return or cancellation)", "unparseable record"]
    assert all("916" not in r.record for r in quarantined)  # no phone numbers in quarantine
    goods = spark.read.parquet(str(settings.root / "clean" / "goods")).collect()
    assert sorted((g.goods_id, g.name) for g in goods) == [("10", "Mug"), ("11", "Saucer")]


def test_rerunning_a_day_replaces_only_that_day(spark, settings):
    other = DAY + dt.timedelta(1)
    land(settings.root, DAY, RECORDS[:1])
    land(settings.root, other, [order(50, f"{other}T09:00:00", None, (10, 1))])
    clean.run(spark, settings, DAY, other)
    land(settings.root, DAY, RECORDS[1:2])
    clean.run(spark, settings, DAY, DAY)
    ids = sorted(r.order_id for r in spark.read.parquet(
        str(settings.root / "clean" / "orders")).collect())
    assert ids == ["2", "50"]


def test_missing_landing_day_names_the_command_to_run(spark, settings):
    with pytest.raises(FileNotFoundError, match="shoprecs extract --date 2024-03-01"):
        clean.run(spark, settings, DAY, DAY)


def test_transform_output_schema(spark):
    raw = spark.read.schema(clean.RAW_ORDER_SCHEMA).json(spark.sparkContext.parallelize(
        [json.dumps(order(1, "2024-03-01T09:00:00", "79165396205", (10, 1)))]))
    raw = raw.withColumn("_seq", raw["id"].cast("long")).withColumn("dt", raw["date"].substr(1, 10))
    out, _ = clean.transform(raw, rules=clean.PhoneRules(), hmac_key="k")
    assertSchemaEqual(out.drop("dt").schema, clean.CLEAN_ORDER_SCHEMA, ignoreNullable=True)
