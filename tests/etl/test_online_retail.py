"""The real Online Retail file through simulator, extractor and cleaner, every line accounted.

input lines = clean lines + quarantined lines + lines merged into another line of the same
order (the same goods twice in one invoice become one line with the summed quantity).
"""
import csv
import datetime as dt
import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from etl import clean
from etl.bus import BusClient, extract
from simulation.retail import load_retail

DATA = Path(os.environ.get("SHOPRECS_ONLINE_RETAIL", Path(__file__).resolve().parents[3]
                           / "shared" / "data" / "online-retail"
                           / "online-retail-2010-12-01_2011-09-30.csv.gz"))

pytestmark = [
    pytest.mark.spark, pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"Online Retail data not found at {DATA} "
                       "(set SHOPRECS_ONLINE_RETAIL to the .csv.gz to run this test)"),
]


def merged_lines(path: Path) -> tuple[int, int]:
    """(input lines, lines a correct cleaner merges): repeats of one goods in one invoice."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = Counter((r["InvoiceNo"], r["StockCode"]) for r in rows if int(r["Quantity"]) > 0)
    return len(rows), sum(n - 1 for n in kept.values())


def test_every_line_is_clean_quarantined_or_merged(spark, bus):
    orders, goods = load_retail(DATA)
    s = bus(orders, goods)
    start, end = dt.date(2010, 12, 1), dt.date(2011, 9, 30)

    s = s.replace(bus_per_page=1000, bus_workers=8)
    manifests = extract(BusClient.from_settings(s.bus), start, end, s.root)
    assert sum(m["orders"] for m in manifests) == len(orders)
    stats = clean.run(spark, s, start, end)

    quarantined = 0
    for row in clean.read_quarantine(spark, s.root).collect():
        record = json.loads(row.record)
        quarantined += len(record["basket"] or []) if "basket" in record else 1
    total, merged = merged_lines(DATA)
    assert total == 370_931
    assert total == stats["lines"] + quarantined + merged
    assert stats["orders"] == len({o["id"] for o in orders
                                   if any(line["quantity"] > 0 for line in o["basket"])})
    reasons = Counter(r.reason for r in clean.read_quarantine(spark, s.root).collect())
    assert set(reasons) == {"quantity <= 0 (return or cancellation)"}, reasons
