"""Crash safety, shown (`make crash-test`, run by CI after the suite): `shoprecs run`
killed (SIGKILL) at each step boundary and in the middle of extract, clean, train and
publish, run again after each kill, and at last twice at once;
the warehouse then equals one uninterrupted night's, and a service running on it answered
every request from a whole version the whole time.

One generated shop: an uninterrupted reference (previous night, then the night) in this
process; the crashed warehouse starts from the same previous night, and the night is run
in subprocesses, each killed when the log or the files show it reached its point.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pyarrow.dataset as ds
import pytest
import requests

from core.config import Settings
from core.phones import normalize
from etl.generator import GeneratorParams, format_phone, generate
from shoprecs import pipeline
from shoprecs.demo import free_port, start_service, start_simulator
from tests.conftest import TEST_KEY

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.crash]
FIRST, NIGHT = dt.date(2024, 1, 1), dt.date(2024, 1, 4)


def _files(pattern: str):
    """A trigger: the warehouse holds a path matching `pattern` (a Spark job or a publish
    half-way through writing)."""
    return lambda root: any(root.glob(pattern))


def _staging(root: Path) -> bool:
    """serving/.<version>.<pid>.tmp: a publish is copying the version (milliseconds)."""
    with os.scandir(root / "serving") as entries:
        return any(e.name.startswith(".") and e.name.endswith(".tmp") and e.is_dir()
                   for e in entries)


# (name, log line that arms the trigger, trigger on the warehouse or None: kill at once).
# A boundary kill lands as the log shows the next step starting.
KILLS = [
    ("mid extract", "step extract: started", _files("landing/orders/dt=*/_parts/page-*")),
    ("before clean", "step clean: started", None),
    ("mid clean", "step clean: started", _files("clean/orders/.spark-staging-*")),
    ("before attribute", "step attribute: started", None),
    ("before train", "step train: started", None),
    ("mid train", "step train: started", _files("models/*/als/metadata")),
    ("mid publish", "step publish: started", _staging),
    ("before publish", "step publish: started", None),
    ("before privacy", "step publish: done", None),
]


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    params = GeneratorParams(start=FIRST, days=4, orders=1200, shoppers=150, goods=100,
                             clusters=3, items_per_cluster=20, bundles=4, bundle_rate=0.4,
                             seed=3)
    orders, goods, _ = generate(params)
    base = tmp_path_factory.mktemp("crash")
    s = dataclasses.replace(
        Settings(), warehouse_root=str(base / "reference"), privacy_hmac_key=TEST_KEY,
        bus_url=f"http://127.0.0.1:{free_port()}", bus_per_page=20, bus_retries=1,
        train_window_days=30, train_holdout_days=0, tracking_enabled=False,
        service_port=free_port())
    bus = start_simulator(orders, goods, s)
    spark.catalog.clearCache()
    try:
        previous = pipeline.run_all(s, FIRST, NIGHT - dt.timedelta(days=1), spark=spark)
        crashed = dataclasses.replace(s, warehouse_root=str(base / "crashed"))
        shutil.copytree(s.warehouse, crashed.warehouse)
        final = pipeline.run_all(s, NIGHT, NIGHT, spark=spark)
        yield s, crashed, orders, previous, final
    finally:
        bus.stop()


def run_night(settings: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(settings.warehouse),
           "SHOPRECS_BUS_URL": settings.bus_url, "SHOPRECS_BUS_PER_PAGE": "20",
           "SHOPRECS_PRIVACY_HMAC_KEY": TEST_KEY, "SHOPRECS_TRAIN_WINDOW_DAYS": "30",
           "SHOPRECS_TRAIN_HOLDOUT_DAYS": "0", "SHOPRECS_TRACKING_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "shoprecs.cli", "run", "--date",
                             NIGHT.isoformat()], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), start_new_session=True)


def kill_when(proc: subprocess.Popen, log: Path, root: Path, line: str, trigger) -> str:
    """SIGKILL the run (its whole process group: Spark's JVM too) once `line` is in its log
    and `trigger` holds; returns the log's last line."""
    seen, armed = "", False
    deadline = time.monotonic() + 300
    with open(log) as fh:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended before {line!r}:\n{seen[-3000:]}"
            if not armed:
                seen = (seen + fh.read())[-20000:]
                armed = line in seen
            if armed and (trigger is None or trigger(root)):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return (seen + fh.read()).strip().splitlines()[-1]
            time.sleep(0.0005 if armed else 0.005)
    raise AssertionError(f"no {line!r} in 300 s:\n{seen[-3000:]}")


class Watcher(threading.Thread):
    """Asks the running service for one shopper's recommendations, again and again."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.answers = url, threading.Event(), Counter()
        self.failures: list[str] = []

    def run(self):
        while not self.stop.is_set():
            try:
                resp = requests.get(self.url, timeout=5)
                if resp.status_code != 200:
                    self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                else:
                    self.answers[resp.headers["X-Model-Version"]] += 1
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            time.sleep(0.02)


def state(root: Path) -> dict:
    """What the night must leave: landed bytes, clean rows, versions, the served results."""
    def rows(path, *columns):
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True),
                      key=lambda r: tuple("" if v is None else str(v) for v in r))
    current = (root / "serving" / "CURRENT").read_text().strip()
    return {
        "landed": {p.parent.name: p.read_text() for p in
                   sorted((root / "landing" / "orders").glob("dt=*/_manifest.json"))},
        "clean": rows(root / "clean" / "orders", "dt", "order_id", "goods_id", "user_key",
                      "quantity"),
        "models": sorted(p.name for p in (root / "models").iterdir() if p.is_dir()),
        "latest": (root / "models" / "LATEST").read_text(), "current": current,
        "user_recs": rows(root / "serving" / current / "user_recs", "user_key", "goods_id",
                          "rank"),
        "rules": rows(root / "serving" / current / "rules", "antecedent", "consequent"),
    }


def test_killed_nights_rerun_to_the_uninterrupted_result_while_the_service_answers(
        shop, tmp_path):
    reference, crashed, orders, previous, final = shop
    shopper = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"]
                      ).most_common(1)[0][0]
    service = start_service(crashed, tmp_path / "service.log")
    watcher = Watcher(f"http://127.0.0.1:{crashed.service_port}/users/"
                      f"{quote(format_phone(shopper, 1))}/recommendations")
    try:
        watcher.start()
        for name, line, trigger in KILLS:
            log = tmp_path / f"{name.replace(' ', '-')}.log"
            last = kill_when(run_night(crashed, log), log, crashed.warehouse, line, trigger)
            served = (crashed.warehouse / "serving" / "CURRENT").read_text().strip()
            assert served in (previous, final), (name, served)
            print(f"killed {name}: serving {served}; the run's last line: {last[:160]}")
        # two runs at once: one waits for the other's lock, both end well
        logs = [tmp_path / "both-1.log", tmp_path / "both-2.log"]
        runs = [run_night(crashed, log) for log in logs]
        assert [r.wait(timeout=600) for r in runs] == [0, 0], [
            log.read_text()[-2000:] for log in logs]
        assert any("waiting for the warehouse" in log.read_text() for log in logs)
        time.sleep(1.0)  # the service's poll of serving/CURRENT
    finally:
        watcher.stop.set()
        watcher.join()
        service.terminate()
        service.wait()
    assert state(crashed.warehouse) == state(reference.warehouse)
    leftovers = [p for pattern in ("serving/.*.tmp", "clean/orders/.spark-staging-*",
                                   "landing/orders/dt=*/_parts")
                 for p in crashed.warehouse.glob(pattern)]
    assert leftovers == []  # what killed runs left half-written was cleared by the next
    assert watcher.failures == []
    assert set(watcher.answers) <= {previous, final} and watcher.answers[previous] > 0
