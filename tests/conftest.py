"""Shared fixtures: one SparkSession per test run, a temporary warehouse, settings."""
from __future__ import annotations

import logging

import pytest
from hypothesis import settings as hypothesis_settings

from core.config import Settings

TEST_KEY = "test-hmac-key"


# py4j logs from __del__ at interpreter exit, after pytest closed the captured streams.
logging.getLogger("py4j").setLevel(logging.WARNING)

# Property tests check answers, not speed: on 2 busy cores a first example that imports
# numpy can take longer than hypothesis's default deadline of 200 ms.
hypothesis_settings.register_profile("shoprecs", deadline=None)
hypothesis_settings.load_profile("shoprecs")


def pytest_collection_modifyitems(items):
    """The DAG tests need Airflow: `make test-fast` leaves them out by this marker."""
    for item in items:
        if "/tests/dags/" in str(item.path):
            item.add_marker(pytest.mark.airflow)


@pytest.fixture(scope="session")
def spark():
    from pipeline.spark import configure_environment

    configure_environment()  # spark-defaults.conf through the launcher, as every session
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("shoprecs-tests")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "2")
               # tests run on a few hundred rows: adaptive re-planning only adds latency
               # (about a quarter of a night's time here); production keeps Spark's default
               .config("spark.sql.adaptive.enabled", "false")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings().replace(warehouse_root=str(tmp_path / "warehouse"),
                               privacy_hmac_key=TEST_KEY, bus_per_page=7, bus_retries=1)


@pytest.fixture
def bus(settings):
    """Start the bus simulator over given orders on a free port; returns settings for it."""
    from shoprecs.demo import free_port, start_simulator

    servers = []

    def start(orders, goods, faults=None):
        s = settings.replace(bus_url=f"http://127.0.0.1:{free_port()}")
        servers.append(start_simulator(orders, goods, s, faults))
        return s

    yield start
    for server in servers:
        server.stop()


def order(oid, date, phone, *lines):
    """A bus order; lines are (goodsId, quantity)."""
    return {"id": oid, "date": date, "clientTel": phone,
            "basket": [{"goodsId": g, "quantity": q, "price": 1.0} for g, q in lines]}


SHOPPER = "79165396205"


CATALOG = [("100", "Mug", True, 4.5, "Kitchen"), ("101", "Saucer", True, 2.25, "Kitchen"),
           ("102", "Spoon", True, 1.0, "Cutlery"), ("ABC1", "Tea", True, 3.95, "Food")]


def write_model(root, version, recs=None, rules=None, popular=None, catalog=None,
                similar=None, history=None, factors=None):
    """A trained model version as models/train.py leaves it, built by hand with pyarrow.

    By default: the shopper's list 101 (bought), 102; they bought 101 and, long ago, ABC1;
    100's neighbours 101, 102 and rules 100 -> 101, 100 -> 102, {100, 101} -> 102;
    popular 100, ABC1; the catalog CATALOG (every goods in stock, with a price). `factors`:
    ({user_key: [floats]}, {goods_id: [floats]}), the ALS fit's (none by default)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.phones import user_key

    key = user_key(SHOPPER, TEST_KEY)
    recs = recs if recs is not None else [(key, "101", 0.9, 1, True), (key, "102", 0.5, 2, False)]
    recs = [r if len(r) == 5 else (*r, False) for r in recs]
    similar = similar if similar is not None else [
        ("100", "101", 0.9, 1), ("100", "102", 0.7, 2), ("101", "100", 0.9, 1)]
    rules = rules if rules is not None else [
        (["100"], ["101"], 0.8, 4.0, 0.2), (["100"], ["102"], 0.5, 6.0, 0.1),
        (["100", "101"], ["102"], 0.9, 7.0, 0.05), (["101"], ["100"], 0.3, 2.0, 0.2)]
    popular = popular if popular is not None else [("100", 0.5, 1), ("ABC1", 0.25, 2)]
    catalog = catalog if catalog is not None else CATALOG
    catalog = [c if len(c) == 5 else (*c, None, None, None) for c in catalog]
    history = history if history is not None else [(key, ["101", "ABC1"])]
    out = root / "models" / version
    tables = {
        "user_recs": pa.table({k: list(v) for k, v in zip(
            ["user_key", "goods_id", "score", "rank", "bought"],
            zip(*recs) if recs else [[]] * 5)}),
        "similar": pa.table({k: list(v) for k, v in zip(
            ["goods_id", "similar_id", "score", "rank"], zip(*similar) if similar else [[]] * 4)}),
        "rules": pa.table({k: list(v) for k, v in zip(
            ["antecedent", "consequent", "confidence", "lift", "support"], zip(*rules))}),
        "popular": pa.table({k: list(v) for k, v in zip(["goods_id", "score", "rank"],
                                                        zip(*popular) if popular else [[]] * 3)}),
        "catalog": pa.table({k: list(v) for k, v in zip(
            ["goods_id", "name", "available", "price", "category"], zip(*catalog))},
            schema=pa.schema([("goods_id", pa.string()), ("name", pa.string()),
                              ("available", pa.bool_()), ("price", pa.float64()),
                              ("category", pa.string())])),
        "history": pa.table({"user_key": [k for k, _ in history],
                             "goods": [sorted(g) for _, g in history]},
                            schema=pa.schema([("user_key", pa.string()),
                                              ("goods", pa.list_(pa.string()))])),
    }
    if factors is not None:
        for name, column, rows in (("user_factors", "user_key", factors[0]),
                                   ("item_factors", "goods_id", factors[1])):
            tables[name] = pa.table({column: list(rows), "features": list(rows.values())},
                                    schema=pa.schema([(column, pa.string()),
                                                      ("features", pa.list_(pa.float32()))]))
    for name, table in tables.items():
        (out / "results" / name).mkdir(parents=True)
        pq.write_table(table, out / "results" / name / "part-0.parquet")
    (out / "metrics.json").write_text(json.dumps({"version": version, "trained_on": {"orders": 5}}))
    (out / "_SUCCESS").write_text("")
    return out


@pytest.fixture
def published(settings):
    from engine import publish

    write_model(settings.root, "v1")
    publish(settings.root, "v1")
    return settings
