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

import datetime as dt
import json
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

import pipeline
from core.config import Settings
from core.phones import normalize, user_key
from shoprecs.demo import free_port, start_service, start_simulator
from simulation.generator import GeneratorParams, format_phone, generate
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


def _after(seconds: float):
    """A trigger: `seconds` after the kill was armed (a step that writes nothing until it
    is done, such as the attribution's Spark jobs)."""
    armed: list[float] = []

    def trigger(root: Path) -> bool:
        armed.append(armed[0] if armed else time.monotonic())
        return time.monotonic() - armed[0] >= seconds
    return trigger


def _retained(root: Path) -> bool:
    """The privacy step has rewritten one of the two days past retention, not both."""
    marked = [m for m in root.glob("landing/orders/dt=*/_manifest.json")
              if '"retention"' in m.read_text()]
    return len(marked) == 1


# (name, log line that arms the trigger, trigger on the warehouse or None: kill at once,
# the step the kill must land in: the log's last line must not say it is done).
# A boundary kill lands as the log shows the next step starting. The night's version is
# only known once the reference ran: "{final}" in a pattern is replaced by it.
KILLS = [
    ("mid extract", "step extract: started", _files("landing/orders/dt=*/_parts/page-*"),
     "extract"),
    ("before clean", "step clean: started", None, None),
    ("mid clean", "step clean: started", _files("clean/orders/.spark-staging-*"), "clean"),
    ("before attribute", "step attribute: started", None, None),
    ("mid attribute", "step attribute: started", _after(1.0), "attribute"),
    ("before train", "step train: started", None, None),
    ("mid train", "step train: started", "models/{final}/results/popular", "train"),
    ("mid publish", "step publish: started", _staging, "publish"),
    ("before publish", "step publish: started", None, None),
    ("before privacy", "step publish: done", None, None),
    ("mid privacy", "step privacy: started", _retained, "privacy"),
]
RETENTION_DAYS = "1"  # the night rewrites the two landed days before its last (privacy)


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    params = GeneratorParams(start=FIRST, days=4, orders=1200, shoppers=150, goods=100,
                             clusters=3, items_per_cluster=20, bundles=4, bundle_rate=0.4,
                             seed=3)
    orders, goods, _ = generate(params)
    base = tmp_path_factory.mktemp("crash")
    s = Settings().replace(warehouse_root=str(base / "reference"), privacy_hmac_key=TEST_KEY,
        bus_url=f"http://127.0.0.1:{free_port()}", bus_per_page=20, bus_retries=1,
        train_window_days=30, train_holdout_days=0, tracking_enabled=False,
        privacy_raw_retention_days=0, service_port=free_port())
    bus = start_simulator(orders, goods, s)
    spark.catalog.clearCache()
    shown(s.root, orders)
    try:
        # the nights before keep raw orders (retention 0); the night keeps one day
        previous = pipeline.run(s, FIRST, NIGHT - dt.timedelta(days=1), spark)["publish"]
        crashed = s.replace(warehouse_root=str(base / "crashed"))
        shutil.copytree(s.root, crashed.root)
        s = s.replace(privacy_raw_retention_days=int(RETENTION_DAYS))
        final = pipeline.run(s, NIGHT, NIGHT, spark)["publish"]
        yield s, crashed, orders, previous, final
    finally:
        bus.stop()


def shown(root: Path, orders: list[dict]) -> None:
    """Impressions of an A/B test before the shoppers' orders (each order's first goods,
    shown an hour before), so that the nights' attribution has work to do."""
    for order in orders:
        if not order["clientTel"]:
            continue
        when = dt.datetime.fromisoformat(order["date"]) - dt.timedelta(hours=1)
        key = user_key(normalize(order["clientTel"]), TEST_KEY)
        folder = root / "events" / "impressions" / f"dt={when:%Y-%m-%d}" / f"hour={when:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "part-test.jsonl", "a") as out:
            out.write(json.dumps({
                "id": f"r{order['id']}", "time": f"{when:%Y-%m-%dT%H:%M:%S}.000Z",
                "shopper": key, "route": "recommendations", "version": "v0",
                "experiment": "crash", "arm": "ab"[int(key[:8], 16) % 2], "variant": "model",
                "sources": ["personalized"], "goods": [str(order["basket"][0]["goodsId"])]})
                      + "\n")


def run_night(settings: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(settings.root),
           "SHOPRECS_BUS_URL": settings.bus.url, "SHOPRECS_BUS_PER_PAGE": "20",
           "SHOPRECS_PRIVACY_HMAC_KEY": TEST_KEY, "SHOPRECS_TRAIN_WINDOW_DAYS": "30",
           "SHOPRECS_TRAIN_HOLDOUT_DAYS": "0", "SHOPRECS_TRACKING_ENABLED": "0",
           "SHOPRECS_PRIVACY_RAW_RETENTION_DAYS": RETENTION_DAYS}
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
        self.last: str | None = None  # the version of the last answer

    def run(self):
        while not self.stop.is_set():
            try:
                resp = requests.get(self.url, timeout=5)
                if resp.status_code != 200:
                    self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                else:
                    self.last = resp.headers["X-Model-Version"]
                    self.answers[self.last] += 1
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            time.sleep(0.02)


def _comparable(text: str) -> object:
    """A JSON file without the moments it was written at (they differ run to run)."""
    data = json.loads(text)

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("at", "generated_at", "published_at", "started_at")}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return strip(data)


def state(root: Path) -> dict:
    """Everything the night leaves: landed bytes (past retention, without phones), clean
    rows, versions, each served result set, the model's metrics and report, the
    attribution report."""
    def rows(path, *columns):
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
        columns = columns or tuple(table.column_names)
        return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True),
                      key=lambda r: tuple("" if v is None else str(v) for v in r))
    current = (root / "serving" / "CURRENT").read_text().strip()
    served = root / "serving" / current
    return {
        "landed": {p.parent.name: _comparable(p.read_text()) for p in
                   sorted((root / "landing" / "orders").glob("dt=*/_manifest.json"))},
        "landed orders": {p.parent.name: p.read_text() for p in
                          sorted((root / "landing" / "orders").glob("dt=*/orders.jsonl"))},
        "clean": rows(root / "clean" / "orders", "dt", "order_id", "goods_id", "user_key",
                      "quantity"),
        "models": sorted(p.name for p in (root / "models").iterdir() if p.is_dir()),
        "latest": (root / "models" / "LATEST").read_text(), "current": current,
        **{name: rows(served / name) for name in ("user_recs", "rules", "similar", "popular",
                                                  "catalog", "history")},
        "metrics": _comparable((root / "models" / current / "metrics.json").read_text()),
        "attribution": {p.name: _comparable(p.read_text()) for p in
                        sorted((root / "reports" / "attribution").glob("*.json"))},
    }


def test_killed_nights_rerun_to_the_uninterrupted_result_while_the_service_answers(
        shop, tmp_path):
    reference, crashed, orders, previous, final = shop
    shopper = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"]
                      ).most_common(1)[0][0]
    service = start_service(crashed, tmp_path / "service.log")
    watcher = Watcher(f"http://127.0.0.1:{crashed.service.port}/users/"
                      f"{quote(format_phone(shopper, 1))}/recommendations")
    try:
        watcher.start()
        for name, line, trigger, within in KILLS:
            if isinstance(trigger, str):  # a path of this night's version
                trigger = _files(trigger.format(final=final))
            log = tmp_path / f"{name.replace(' ', '-')}.log"
            last = kill_when(run_night(crashed, log), log, crashed.root, line, trigger)
            if within is not None:  # it landed in the middle of that step
                assert f"step {within}: done" not in log.read_text(), (name, last)
            served = (crashed.root / "serving" / "CURRENT").read_text().strip()
            assert served in (previous, final), (name, served)
            print(f"killed {name}: serving {served}; the run's last line: {last[:160]}")
        # two runs at once: one waits for the other's lock, both end well
        logs = [tmp_path / "both-1.log", tmp_path / "both-2.log"]
        runs = [run_night(crashed, log) for log in logs]
        assert [r.wait(timeout=600) for r in runs] == [0, 0], [
            log.read_text()[-2000:] for log in logs]
        assert any("waiting for the warehouse" in log.read_text() for log in logs)
        deadline = time.monotonic() + 30  # the service's poll of serving/CURRENT
        while watcher.last != final and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watcher.last == final  # the service ends serving the night's version
    finally:
        watcher.stop.set()
        watcher.join()
        service.terminate()
        service.wait()
    assert state(crashed.root) == state(reference.root)
    leftovers = [p for pattern in ("serving/.*.tmp", "clean/orders/.spark-staging-*",
                                   "landing/orders/dt=*/_parts")
                 for p in crashed.root.glob(pattern)]
    assert leftovers == []  # what killed runs left half-written was cleared by the next
    assert watcher.failures == []
    assert set(watcher.answers) <= {previous, final} and watcher.answers[previous] > 0
