"""The nightly pipeline on a Spark standalone cluster gives what it gives in local mode.

A master and one worker (2 cores, 2 GB) start on loopback from the installed pyspark
(tests/cluster/standalone.py, logs and scratch under var/cluster/). The same generated
shop, served by the bus simulator, goes through `shoprecs run` (extract, clean, train,
publish) twice, each run in its own process and warehouse, chosen by configuration alone:
SHOPRECS_SPARK_MASTER=local[2], then SHOPRECS_SPARK_MASTER=spark://127.0.0.1:7077. The
published snapshots must match: same version, the same rules exactly, the same shoppers,
popular goods and catalog, and holdout metrics within a tolerance (ALS sums floating
point in whatever order its tasks finish). The cluster is stopped even when a step fails.

Run with: make cluster-test   (pytest -m cluster; SHOPRECS_CLUSTER_PORT moves the master
off 7077)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import Settings
from pipeline.spark import REPO_ROOT
from simulation.generator import GeneratorParams, generate
from tests.cluster.compare import agreement, evaluation, metric_differences
from tests.cluster.standalone import Standalone, free_port, tail
from tests.conftest import TEST_KEY

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HOME = REPO_ROOT / "var" / "cluster"
START, DAYS = dt.date(2024, 3, 1), 4
END = START + dt.timedelta(days=DAYS - 1)
# A few hundred orders: enough for a holdout day, rules and the hybrid; small enough that
# the two runs take about a minute each on 2 cores.
SHOP = GeneratorParams(start=START, days=DAYS, orders=600, shoppers=120, goods=120,
                       clusters=4, items_per_cluster=20, bundles=4, bundle_rate=0.4, seed=11)
# Absolute, on precision/recall/MAP/NDCG@10 in [0, 1]. Seeded ALS gave identical figures
# in both modes here; the slack is for float sums whose order depends on task timing.
METRIC_TOLERANCE = 0.01
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def bus_url():
    from shoprecs.demo import start_simulator

    orders, goods, _ = generate(SHOP)
    settings = Settings().replace(bus_url=f"http://127.0.0.1:{free_port()}")
    server = start_simulator(orders, goods, settings)
    yield settings.bus.url
    server.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def cluster():
    # The daemons run in their own sessions, so a CI runner's SIGTERM would not reach them:
    # turn it into an interrupt, which pytest answers by tearing this fixture down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    port = int(os.environ.get("SHOPRECS_CLUSTER_PORT", "7077"))
    try:
        standalone = Standalone(HOME, port=port, cores=2, memory="2g").start()
        try:
            yield standalone
        finally:
            standalone.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_pipeline(master: str, warehouse: Path, bus_url: str, log_path: Path) -> float:
    """`shoprecs run` over the shop's days in a fresh process; returns its seconds."""
    env = {k: v for k, v in os.environ.items() if k != "SHOPRECS_CONFIG"}
    env.update({"SHOPRECS_SPARK_MASTER": master,
                "SHOPRECS_WAREHOUSE_ROOT": str(warehouse), "SHOPRECS_BUS_URL": bus_url,
                "SHOPRECS_BUS_PER_PAGE": "200", "SHOPRECS_PRIVACY_HMAC_KEY": TEST_KEY,
                "SHOPRECS_TRAIN_WINDOW_DAYS": str(DAYS), "SHOPRECS_TRAIN_HOLDOUT_DAYS": "1",
                # Equality with local mode is the point here, not quality: let any model
                # that beats nothing at all through.
                "SHOPRECS_GATE_MIN_RATIO_OVER_POPULARITY": "0", "SHOPRECS_SERVICE_URL": ""})
    started = time.monotonic()
    with open(log_path, "wb") as out:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "shoprecs.cli", "run", "--from", START.isoformat(),
                 "--to", END.isoformat()], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`shoprecs run` against {master} did not finish in {RUN_TIMEOUT} s; "
                        f"{log_path} ends with:\n{tail(log_path)}")
    if proc.returncode != 0:
        pytest.fail(f"`shoprecs run` against {master} exited with {proc.returncode}; "
                    f"{log_path} ends with:\n{tail(log_path, 30)}")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def runs(cluster, bus_url):
    """Both runs' warehouses, seconds, and the master's record of the applications."""
    out = {}
    for mode, master in (("local", "local[2]"), ("cluster", cluster.url)):
        warehouse = HOME / f"warehouse-{mode}"
        shutil.rmtree(warehouse, ignore_errors=True)
        seconds = run_pipeline(master, warehouse, bus_url, HOME / f"run-{mode}.log")
        out[mode] = {"warehouse": warehouse, "seconds": round(seconds, 1)}
    out["master_state"] = cluster.state()
    (HOME / "timings.json").write_text(json.dumps(
        {mode: out[mode]["seconds"] for mode in ("local", "cluster")}))
    return out


def test_the_pipeline_ran_on_the_cluster_executors(runs, cluster):
    apps = runs["master_state"]["completedapps"]
    assert [a["name"] for a in apps] == ["shoprecs"], apps  # local mode never registers
    assert apps[0]["state"] == "FINISHED", apps[0]
    executor_logs = list((cluster.home / "work").glob("app-*/*/stderr"))
    assert executor_logs, f"no executor ran under {cluster.home / 'work'}"
    # The pandas UDFs (item neighbours, similar items) ran in the executors' Python workers,
    # with the project importable there.
    assert any("Starting Python task execution" in p.read_text(errors="replace")
               for p in executor_logs), executor_logs


@pytest.fixture(scope="module")
def agreed(runs):
    return agreement(runs["local"]["warehouse"], runs["cluster"]["warehouse"])


def test_same_version_and_exactly_the_same_rules(agreed):
    assert agreed["same_version"], agreed  # same landed data, same parameters
    assert agreed["rules"] >= 2, "the shop's planted bundles should give rules"
    assert agreed["same_rules"], agreed


def test_same_shoppers_recommendations_popular_goods_and_catalog(agreed):
    assert agreed["shoppers"] >= 50
    assert agreed["same_shoppers"], agreed
    assert agreed["top10_shared"] >= 0.9, \
        f"only {agreed['top10_shared']:.0%} of the local top-10 recommendations agree"
    assert agreed["same_popular"] and agreed["same_catalog"], agreed


def test_holdout_metrics_agree_within_tolerance(runs, agreed):
    local, _ = evaluation(runs["local"]["warehouse"])
    remote, _ = evaluation(runs["cluster"]["warehouse"])
    assert agreed["same_trained_on"], agreed
    assert "models" in local, f"no holdout evaluation: {local.get('skipped')}"
    assert remote["test_users"] == local["test_users"] > 0
    assert set(remote["models"]) == set(local["models"]) >= {"hybrid", "als"}
    off = [f"{name}: local {a:.4f}, cluster {b:.4f}"
           for name, (a, b) in metric_differences(local, remote).items()
           if abs(a - b) > METRIC_TOLERANCE]
    assert not off, off
    assert local["models"]["hybrid"]["all"]["map"] > 0
