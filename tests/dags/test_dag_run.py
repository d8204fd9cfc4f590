"""`airflow dags test shoprecs_daily D` for real: a private Airflow (tests/dags/conftest.py),
the bus simulator on generated orders, local Spark, then the Flask app over the warehouse.

The module runs in order, on one warehouse: a 3-day backfill (one `dags test` per day, as
Airflow 3's `backfill create` only creates runs for a scheduler to execute), a re-run of
the last night, and a night whose bus is down: five nights in all. Slow: every run is an
Airflow process with its own Spark. A failing gate is tested in-process (tests/dags/test_tasks.py).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from core.config import Settings
from core.phones import normalize
from etl.generator import GeneratorParams, format_phone, generate
from shoprecs.demo import free_port, start_simulator
from tests.conftest import TEST_KEY
from tests.dags.conftest import AIRFLOW

pytestmark = [pytest.mark.slow]

FIRST = dt.date(2024, 1, 1)
DAYS = 3  # the backfill: 2024-01-01..2024-01-03; the simulator also has day 4
ADMIN_KEYS = "admin-key-1,admin-key-2"


class _Hooks(BaseHTTPRequestHandler):
    """Stands in for the service's POST /admin/reload and for the alert webhook."""

    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append({"path": self.path, "key": self.headers.get("X-API-Key"),
                           "body": json.loads(body) if body else None})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hooks():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hooks.calls = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _Hooks.calls
    server.shutdown()


@pytest.fixture(scope="module")
def shop(tmp_path_factory, airflow_env, hooks):
    """Generated orders for 4 days served by the simulator, and the env of a DAG run."""
    params = GeneratorParams(start=FIRST, days=DAYS + 1, orders=400, shoppers=120, goods=80,
                             clusters=3, items_per_cluster=20, bundles=4, bundle_rate=0.4,
                             seed=11)
    orders, goods, _ = generate(params)
    settings = dataclasses.replace(
        Settings(), warehouse_root=str(tmp_path_factory.mktemp("dag") / "warehouse"),
        bus_url=f"http://127.0.0.1:{free_port()}", privacy_hmac_key=TEST_KEY,
        admin_api_keys=ADMIN_KEYS, service_reload_interval=0.0)
    simulator = start_simulator(orders, goods, settings)
    url, _ = hooks
    env = {**airflow_env,
           "SHOPRECS_WAREHOUSE_ROOT": settings.warehouse_root,
           "SHOPRECS_BUS_URL": settings.bus_url, "SHOPRECS_BUS_PER_PAGE": "200",
           "SHOPRECS_BUS_RETRIES": "1", "SHOPRECS_BUS_TIMEOUT": "10",
           "SHOPRECS_PRIVACY_HMAC_KEY": TEST_KEY,
           # No holdout: a few days of 100 orders are too little to measure a model on
           # (popularity wins on 80 goods), so the gate lets every night through with a
           # warning. Evaluation and the gate: tests/models, tests/dags/test_tasks.py.
           "SHOPRECS_TRAIN_WINDOW_DAYS": "30", "SHOPRECS_TRAIN_HOLDOUT_DAYS": "0",
           "SHOPRECS_SERVICE_URL": url, "SHOPRECS_ADMIN_API_KEYS": ADMIN_KEYS,
           "SHOPRECS_ALERT_WEBHOOK_URL": f"{url}/alert"}
    yield settings, orders, env
    simulator.stop()


def dags_test_dag(env: dict, dag_id: str, run_date: dt.date,
                  **extra_env) -> tuple[int, str, float]:
    """`airflow dags test <dag_id> <run_date>`: (exit code, output tail, seconds)."""
    started = time.perf_counter()
    done = subprocess.run([AIRFLOW, "dags", "test", dag_id, run_date.isoformat()],
                          env={**env, **extra_env}, capture_output=True, text=True,
                          timeout=900)
    seconds = time.perf_counter() - started
    print(f"airflow dags test {dag_id} {run_date}: exit {done.returncode}, {seconds:.0f} s")
    return done.returncode, (done.stdout + done.stderr)[-20000:], seconds


def dags_test(env: dict, run_date: dt.date, **extra_env) -> tuple[int, str, float]:
    return dags_test_dag(env, "shoprecs_daily", run_date, **extra_env)


def task_states(env: dict) -> dict[str, tuple[str, int]]:
    """task_id -> (state, try_number) of the latest DAG run, from the metadata DB."""
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = 'shoprecs_daily' ORDER BY id DESC "
            "LIMIT 1)").fetchall()
    return {task: (state, tries) for task, state, tries in rows}


def served(root: Path) -> tuple[str, dict]:
    version = (root / "serving" / "CURRENT").read_text().strip()
    return version, json.loads((root / "serving" / version / "manifest.json").read_text())


def fingerprint_of(root: Path) -> dict:
    """What a re-run must leave as it was: landed bytes, clean rows, versions, CURRENT."""
    import pyarrow.dataset as ds

    landed = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted((root / "landing").rglob("*")) if p.is_file()}
    clean = ds.dataset(root / "clean" / "orders", format="parquet", partitioning="hive")
    return {"landed": landed, "clean_rows": clean.count_rows(),
            "models": sorted(p.name for p in (root / "models").iterdir()),
            "serving": sorted(p.name for p in (root / "serving").iterdir()),
            "current": served(root)[0]}


@pytest.fixture(scope="module")
def backfill(shop):
    """Runs D = 01-02..01-04, each processing the day before: days 01-01..01-03."""
    _, _, env = shop
    return [dags_test(env, FIRST + dt.timedelta(days=n)) for n in range(1, DAYS + 1)]


def test_backfill_runs_every_night(backfill):
    for code, output, _ in backfill:
        assert code == 0, output


def test_backfill_lands_every_day(shop, backfill):
    settings, orders, _ = shop
    landing = settings.warehouse / "landing" / "orders"
    days = sorted(p.name for p in landing.iterdir() if (p / "_manifest.json").exists())
    assert days == [f"dt={FIRST + dt.timedelta(days=n)}" for n in range(DAYS)]
    # each night's attribute task reported (no storefront ran: no impressions)
    reports = sorted(p.name for p in (settings.warehouse / "reports" / "attribution").iterdir())
    assert reports == [f"{day[3:]}.json" for day in days]
    per_day = Counter(o["date"][:10] for o in orders)
    for day in days:
        manifest = json.loads((landing / day / "_manifest.json").read_text())
        assert manifest["orders"] == per_day[day[3:]], day


def test_backfill_serves_one_version_trained_on_all_days(shop, backfill):
    settings, orders, _ = shop
    version, manifest = served(settings.warehouse)
    last = (FIRST + dt.timedelta(days=DAYS - 1)).isoformat()
    window = manifest["metrics"]["window"]
    assert window[0] <= FIRST.isoformat() and window[1] == last
    assert version.startswith(last.replace("-", ""))
    in_backfill = {o["id"] for o in orders if o["date"][:10] <= last}
    assert manifest["metrics"]["trained_on"]["orders"] == len(in_backfill)
    assert (settings.warehouse / "models" / "LATEST").read_text().strip() == version


def test_service_answers_from_the_published_version(shop, backfill):
    from service import create_app

    settings, orders, _ = shop
    version, _ = served(settings.warehouse)
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    assert client.get("/models").get_json()["version"] == version
    best = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"]).most_common(1)
    resp = client.get(f"/users/{quote(format_phone(best[0][0], 0))}/recommendations?limit=5")
    assert resp.status_code == 200 and len(resp.get_json()) == 5
    assert resp.headers["X-Model-Version"] == version
    assert resp.headers["X-Recommendation-Source"] == "personalized"


def test_each_night_asks_the_service_to_reload(hooks, backfill):
    _, calls = hooks
    reloads = [c for c in calls if c["path"] == "/admin/reload"]
    assert len(reloads) == DAYS
    assert {c["key"] for c in reloads} == {ADMIN_KEYS.split(",")[0]}
    assert not [c for c in calls if c["path"] == "/alert"]  # no task failed


def test_second_run_of_a_night_changes_nothing(shop, backfill):
    settings, _, env = shop
    before = fingerprint_of(settings.warehouse)
    code, output, _ = dags_test(env, FIRST + dt.timedelta(days=DAYS))
    assert code == 0, output
    assert fingerprint_of(settings.warehouse) == before
    assert "already trained" in output  # neither training task trained again


def test_bus_down_fails_the_run_and_keeps_the_served_version(shop, hooks, backfill):
    settings, _, env = shop
    version, _ = served(settings.warehouse)
    dead_bus = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, output, seconds = dags_test(env, FIRST + dt.timedelta(days=DAYS + 1),
                                      SHOPRECS_BUS_URL=dead_bus)
    assert code != 0 and "DagRun failed" in output
    states = task_states(env)
    assert states["extract"] == ("failed", 5)  # the first try and 4 retries
    assert {states[t][0] for t in states if t != "extract"} == {"upstream_failed"}
    # Exponential backoff from a 1 s base: at least 1 + 2 + 4 + 8 s between the tries.
    assert seconds >= 15
    assert served(settings.warehouse)[0] == version
    day4 = settings.warehouse / "landing" / "orders" / f"dt={FIRST + dt.timedelta(days=DAYS)}"
    assert not (day4 / "_manifest.json").exists()
    alerts = [c["body"] for c in hooks[1] if c["path"] == "/alert"]
    assert [a["task_id"] for a in alerts] == ["extract"]
    # the one line `shoprecs` prints, in the task's log and the alert, without a traceback
    line = f"error: the bus at {dead_bus} is unreachable"
    assert alerts[0]["error"].startswith(line) and "check bus.url" in alerts[0]["error"]
    assert line in output


def test_weekly_tune_writes_the_parameters_the_nights_then_use(shop):
    from models import train

    settings, _, env = shop
    tuned = settings.warehouse / "models" / "TUNED.json"
    assert not tuned.exists()
    # A run at 2024-01-04 (any date, by hand) tunes on the window ending the day before,
    # 2024-01-03, the last landed day; its validation window is the day before that.
    code, output, _ = dags_test_dag(env, "shoprecs_tune", FIRST + dt.timedelta(days=DAYS),
                                    SHOPRECS_TUNE_QUICK="1")
    assert code == 0, output
    report = json.loads(tuned.read_text())
    assert report["validation"] == ["2024-01-02", "2024-01-02"] and report["score"] > 0
    assert not (settings.warehouse / "models" / "tune-progress.json").exists()
    plan = train.plan(settings, FIRST + dt.timedelta(days=DAYS - 1))
    assert plan.tuning["tuned_at"] == report["tuned_at"]  # the next night trains with them
    assert plan.hybrid.as_dict() == report["hybrid"]


def test_hourly_catalog_publishes_what_the_bus_lists(shop):
    from engine.shoprules import RulesHolder

    settings, _, env = shop
    code, output, _ = dags_test_dag(env, "shoprecs_catalog", FIRST + dt.timedelta(days=DAYS))
    assert code == 0, output
    rules = RulesHolder(settings.warehouse).current()
    assert rules.catalog is not None and rules.category  # the generator's categories
