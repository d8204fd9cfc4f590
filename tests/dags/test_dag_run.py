"""The DAGs run for real against the bus simulator on generated orders, local Spark, then
the Flask app over the warehouse: a 3-night backfill (the first night a real `airflow dags
test` subprocess, the others in this process with `dag.test()`, on the suite's Spark), a
re-run of the last night, a night whose bus is down, the weekly tune and the hourly
catalog. Each is a module fixture that needs the one before it, so the tests read the same
warehouse in any order. A failing gate: tests/dags/test_tasks.py.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
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
from shoprecs.demo import free_port, start_simulator
from simulation.generator import GeneratorParams, format_phone, generate
from tests.conftest import TEST_KEY
from tests.dags.conftest import AIRFLOW, environment

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
def shop(tmp_path_factory, hooks):
    """Generated orders for 4 days served by the simulator; the settings of a DAG run."""
    params = GeneratorParams(start=FIRST, days=DAYS + 1, orders=400, shoppers=120, goods=80,
                             clusters=3, items_per_cluster=20, bundles=4, bundle_rate=0.4,
                             seed=11)
    orders, goods, _ = generate(params)
    settings = Settings().replace(warehouse_root=str(tmp_path_factory.mktemp("dag") / "warehouse"),
        bus_url=f"http://127.0.0.1:{free_port()}", privacy_hmac_key=TEST_KEY,
        admin_api_keys=ADMIN_KEYS, service_reload_interval=0.0)
    simulator = start_simulator(orders, goods, settings)
    url, _ = hooks
    env = {"SHOPRECS_WAREHOUSE_ROOT": str(settings.root),
           "SHOPRECS_BUS_URL": settings.bus.url, "SHOPRECS_BUS_PER_PAGE": "200",
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


def dags_test(airflow_env: dict, env: dict, run_date: dt.date) -> tuple[int, str]:
    """`airflow dags test shoprecs_daily <run_date>`, a real subprocess: (exit, output)."""
    done = subprocess.run([AIRFLOW, "dags", "test", "shoprecs_daily", run_date.isoformat()],
                          env={**airflow_env, **env}, capture_output=True, text=True,
                          timeout=900)
    return done.returncode, (done.stdout + done.stderr)[-20000:]


def dag_test(dagbag, dag_id: str, env: dict, run_date: dt.date, **extra):
    """`dag.test()` of `dag_id` for the run at `run_date`, in this process (its tasks use
    the suite's Spark): (the DagRun's state, task id -> (state, try number), seconds)."""
    dag = dagbag.dags[dag_id]
    started = time.perf_counter()
    with environment({**env, **extra}):
        run = dag.test(logical_date=dt.datetime.combine(run_date, dt.time(), dt.UTC))
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    return str(run.state), states, time.perf_counter() - started


def served(root: Path) -> tuple[str, dict]:
    version = (root / "serving" / "CURRENT").read_text().strip()
    return version, json.loads((root / "serving" / version / "manifest.json").read_text())


def fingerprint_of(root: Path) -> dict:
    """What a re-run must leave as it was: landed bytes, clean rows, versions, CURRENT."""
    import pyarrow.dataset as ds

    landed = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted((root / "landing").rglob("*")) if p.is_file()}
    clean = ds.dataset(root / "clean" / "orders", format="parquet", partitioning="hive")
    models = root / "models"
    return {"landed": landed, "clean_rows": clean.count_rows(),
            "models": sorted(p.name for p in models.iterdir()),
            "trained": {p.parent.name: p.stat().st_mtime_ns
                        for p in models.glob("*/metrics.json")},
            "serving": sorted(p.name for p in (root / "serving").iterdir()),
            "current": served(root)[0]}


@pytest.fixture(scope="module")
def backfill(spark, dagbag, airflow_env, shop, hooks):
    """Runs D = 01-02..01-04, each processing the day before (days 01-01..01-03): the first
    a real `airflow dags test`, the others in this process. What the hooks were called with
    by then."""
    _, _, env = shop
    code, output = dags_test(airflow_env, env, FIRST + dt.timedelta(days=1))
    assert code == 0, output
    nights = [dag_test(dagbag, "shoprecs_daily", env, FIRST + dt.timedelta(days=n))
              for n in range(2, DAYS + 1)]
    return output, nights, list(hooks[1])


@pytest.fixture(scope="module")
def rerun(dagbag, shop, backfill):
    """The last night run again: (the warehouse before, after, the run)."""
    settings, _, env = shop
    before = fingerprint_of(settings.root)
    night = dag_test(dagbag, "shoprecs_daily", env, FIRST + dt.timedelta(days=DAYS))
    return before, fingerprint_of(settings.root), night


@pytest.fixture(scope="module")
def bus_down(dagbag, shop, hooks, rerun):
    """The next night with no bus: (the run, the version served before it)."""
    settings, _, env = shop
    version = served(settings.root)[0]
    dead_bus = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    night = dag_test(dagbag, "shoprecs_daily", env, FIRST + dt.timedelta(days=DAYS + 1),
                     SHOPRECS_BUS_URL=dead_bus)
    return night, version, dead_bus


@pytest.fixture(scope="module")
def tuned(dagbag, shop, bus_down):
    """The weekly tune, run at 2024-01-04 (by hand): the window ending 2024-01-03."""
    settings, _, env = shop
    assert not (settings.root / "models" / "TUNED.json").exists()
    return dag_test(dagbag, "shoprecs_tune", env, FIRST + dt.timedelta(days=DAYS),
                    SHOPRECS_TUNE_QUICK="1")


@pytest.fixture(scope="module")
def refreshed(dagbag, shop, tuned):
    _, _, env = shop
    return dag_test(dagbag, "shoprecs_catalog", env, FIRST + dt.timedelta(days=DAYS))


def test_backfill_runs_every_night_the_first_for_real(backfill):
    _, nights, _ = backfill  # the first night's `airflow dags test` exited 0
    for state, tasks, _ in nights:
        assert state == "success", tasks
        assert all(s == "success" for s, _ in tasks.values()), tasks


def test_backfill_lands_every_day(shop, backfill):
    settings, orders, _ = shop
    landing = settings.root / "landing" / "orders"
    days = sorted(p.name for p in landing.iterdir() if (p / "_manifest.json").exists())
    assert days[:DAYS] == [f"dt={FIRST + dt.timedelta(days=n)}" for n in range(DAYS)]
    # each night's attribute step reported (no storefront ran: no impressions)
    reports = sorted(p.name for p in (settings.root / "reports" / "attribution").iterdir())
    assert reports[:DAYS] == [f"{day[3:]}.json" for day in days[:DAYS]]
    per_day = Counter(o["date"][:10] for o in orders)
    for day in days[:DAYS]:
        manifest = json.loads((landing / day / "_manifest.json").read_text())
        assert manifest["orders"] == per_day[day[3:]], day


def test_backfill_serves_one_version_trained_on_all_days(shop, backfill):
    settings, orders, _ = shop
    version, manifest = served(settings.root)
    last = (FIRST + dt.timedelta(days=DAYS - 1)).isoformat()
    window = manifest["metrics"]["window"]
    assert window[0] <= FIRST.isoformat() and window[1] == last
    assert version.startswith(last.replace("-", ""))
    in_backfill = {o["id"] for o in orders if o["date"][:10] <= last}
    assert manifest["metrics"]["trained_on"]["orders"] == len(in_backfill)
    assert (settings.root / "models" / "LATEST").read_text().strip() == version


def test_service_answers_from_the_published_version(shop, backfill):
    from service import create_app

    settings, orders, _ = shop
    version, _ = served(settings.root)
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    assert client.get("/models").get_json()["version"] == version
    best = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"]).most_common(1)
    resp = client.get(f"/users/{quote(format_phone(best[0][0], 0))}/recommendations?limit=5")
    assert resp.status_code == 200 and len(resp.get_json()) == 5
    assert resp.headers["X-Model-Version"] == version
    assert resp.headers["X-Recommendation-Source"] == "personalized"


def test_each_night_asks_the_service_to_reload(backfill):
    _, _, calls = backfill
    reloads = [c for c in calls if c["path"] == "/admin/reload"]
    assert len(reloads) == DAYS
    assert {c["key"] for c in reloads} == {ADMIN_KEYS.split(",")[0]}
    assert not [c for c in calls if c["path"] == "/alert"]  # no task failed


def test_second_run_of_a_night_changes_nothing(rerun):
    before, after, (state, tasks, _) = rerun
    assert state == "success", tasks
    assert after == before  # nothing landed, cleaned or trained again; the same served


def test_bus_down_fails_the_run_and_keeps_the_served_version(shop, hooks, bus_down):
    settings, _, _ = shop
    (state, tasks, seconds), version, dead_bus = bus_down
    assert state == "failed"
    assert tasks["extract"] == ("failed", 5)  # the first try and 4 retries
    assert {tasks[t][0] for t in tasks if t != "extract"} == {"upstream_failed"}
    # Exponential backoff from a 1 s base: at least 1 + 2 + 4 + 8 s between the tries.
    assert seconds >= 15
    assert served(settings.root)[0] == version
    day4 = settings.root / "landing" / "orders" / f"dt={FIRST + dt.timedelta(days=DAYS)}"
    assert not (day4 / "_manifest.json").exists()
    alerts = [c["body"] for c in hooks[1] if c["path"] == "/alert"]
    assert [a["task_id"] for a in alerts] == ["extract"]
    # the one line `shoprecs` prints, in the alert, without a traceback
    line = f"error: the bus at {dead_bus} is unreachable"
    assert alerts[0]["error"].startswith(line) and "check bus.url" in alerts[0]["error"]


def test_weekly_tune_writes_the_parameters_the_nights_then_use(shop, tuned):
    from models import train

    settings, _, _ = shop
    state, tasks, _ = tuned
    assert state == "success", tasks
    report = json.loads((settings.root / "models" / "TUNED.json").read_text())
    # the window ending 2024-01-03, the last landed day; validation: the day before it
    assert report["validation"] == ["2024-01-02", "2024-01-02"] and report["score"] > 0
    assert not (settings.root / "models" / "tune-progress.json").exists()
    plan = train.plan(settings, FIRST + dt.timedelta(days=DAYS - 1))
    assert plan.tuning["tuned_at"] == report["tuned_at"]  # the next night trains with them
    assert dataclasses.asdict(plan.hybrid) == report["hybrid"]


def test_hourly_catalog_publishes_what_the_bus_lists(shop, refreshed):
    from engine.shoprules import RulesHolder

    settings, _, _ = shop
    state, tasks, _ = refreshed
    assert state == "success", tasks
    rules = RulesHolder(settings.root).current()
    assert rules.catalog is not None and rules.category  # the generator's categories
