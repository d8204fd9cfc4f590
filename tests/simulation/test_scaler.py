"""The data scaler: Online Retail's shape at any volume, landed as the extractor lands."""
import dataclasses
import datetime as dt
import json

import pytest

from etl import clean
from simulation import scaler


def test_volume_scales_linearly_and_the_catalog_by_its_square_root():
    one, sixteen = scaler.Shape(scale=1), scaler.Shape(scale=16)
    assert (one.orders, one.shoppers, one.goods) == (14_876, 3_616, 3_764)
    assert sixteen.orders == 16 * one.orders and sixteen.shoppers == 16 * one.shoppers
    assert sixteen.goods == 4 * one.goods


@pytest.mark.spark
def test_a_small_shop_lands_whole_and_cleans_without_quarantine(spark, settings, tmp_path):
    shape = scaler.Shape(scale=0.05, days=28)
    root = settings.root
    written = scaler.land(root, shape, progress=False)
    assert written["orders"] == shape.orders == 744
    landed = sorted((root / "landing" / "orders").iterdir())
    assert len(landed) == 28
    saturdays = [d for d in landed
                 if dt.date.fromisoformat(d.name[3:]).weekday() == 5]
    assert saturdays and all(
        json.loads((d / "_manifest.json").read_text())["orders"] == 0 for d in saturdays)

    end = shape.start + dt.timedelta(shape.days - 1)
    stats = clean.run(spark, settings, shape.start, end)
    assert stats["orders"] == written["orders"]  # every order is valid
    assert stats["lines"] == written["lines"]
    assert stats["quarantined"] == 0 and stats["lines_without_catalog_name"] == 0
    sizes = [r["n"] for r in clean.read_clean(spark, root, shape.start, end)
             .groupBy("order_id").count().withColumnRenamed("count", "n").collect()]
    sizes.sort()
    assert 8 <= sizes[len(sizes) // 2] <= 25  # a median basket like Online Retail's 14


def test_same_seed_same_shop(tmp_path):
    shape = scaler.Shape(scale=0.01, days=7)
    a, b = tmp_path / "a", tmp_path / "b"
    assert scaler.land(a, shape, progress=False) == scaler.land(b, shape, progress=False)
    day = "dt=2010-12-02"
    assert ((a / "landing/orders" / day / "orders.jsonl").read_bytes()
            == (b / "landing/orders" / day / "orders.jsonl").read_bytes())
    scaler.land(tmp_path / "c", dataclasses.replace(shape, seed=8), progress=False)
    assert ((tmp_path / "c/landing/orders" / day / "orders.jsonl").read_bytes()
            != (a / "landing/orders" / day / "orders.jsonl").read_bytes())
