"""docs/bus.md's contract table lists exactly the fields the cleaning job reads from a bus
(the Spark schemas the landed JSON is read with), so the docs cannot drift from the code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyspark.sql.types import StructType

from core.bus_profile import BusProfile
from etl import clean

DOCS = Path(__file__).parents[2] / "docs" / "bus.md"
pytestmark = pytest.mark.spark  # StructType.fromDDL parses in the JVM

INTERNAL = {"_user_key", "_corrupt_record"}  # the product's own columns, not the bus's


def documented() -> dict[str, set[str]]:
    """where -> field names, from the table between the contract markers."""
    table = DOCS.read_text().split("<!-- contract:start -->")[1].split("<!-- contract:end -->")[0]
    fields: dict[str, set[str]] = {}
    for row in [line for line in table.splitlines() if line.startswith("|")][2:]:
        where, field = (cell.strip() for cell in row.strip("|").split("|")[:2])
        fields.setdefault(where, set()).add(re.match(r"`([^`]+)`", field).group(1))
    return fields


def test_the_documented_contract_is_what_the_cleaning_job_reads(spark):
    # every field the default profile names, the optional source under its usual name
    orders = StructType.fromDDL(clean.raw_schema(BusProfile(source_field="source")))
    basket = orders["basket"].dataType.elementType
    goods = StructType.fromDDL(clean.GOODS_SCHEMA)
    assert documented() == {"order": set(orders.names) - INTERNAL,
                            "basket line": set(basket.names),
                            "goods": set(goods.names)}
