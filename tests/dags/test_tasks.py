"""The DAG's tasks called in-process on a hand-made warehouse: the decisions they take
without Spark (gate, publish, reload), fast. tests/dags/test_dag_run.py runs them for real."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from engine import current_version
from models import train
from tests.conftest import write_model

END = dt.date(2024, 1, 7)
NIGHT = [END.isoformat(), END.isoformat()]


@pytest.fixture
def env(published, monkeypatch):
    """The worker's environment pointing at `published` (v1 served); returns the settings."""
    for name in ("warehouse_root", "privacy_hmac_key", "service_url"):
        monkeypatch.setenv(f"SHOPRECS_{name.upper()}", str(getattr(published, name)))
    return published


def task(dagbag, task_id):
    return dagbag.dags["shoprecs_daily"].get_task(task_id).python_callable


def trained(settings, als_map: float, popularity_map: float, end=END) -> str:
    """A complete model for the window ending at `end`, as both training parts leave it."""
    plan = train.plan(settings, end)
    out = write_model(settings.warehouse, plan.version)
    models = {"hybrid": {"all": {"map": als_map}}, "popularity": {"all": {"map": popularity_map}}}
    (out / "metrics.json").write_text(json.dumps({
        "version": plan.version, "published_model": "hybrid", "window": plan.params["window"],
        "evaluation": {"k": 10, "models": models}}))
    return plan.version


def test_failed_gate_fails_the_task_for_good_and_keeps_the_served_version(dagbag, env):
    from airflow.sdk.exceptions import AirflowFailException

    version = trained(env, als_map=0.01, popularity_map=0.05)
    with pytest.raises(AirflowFailException, match="does not beat the popularity baseline"):
        task(dagbag, "evaluate_gate")(NIGHT, version, version, "0 impressions")
    assert current_version(env.warehouse) == "v1"


def test_gate_passes_a_good_model(dagbag, env):
    version = trained(env, als_map=0.08, popularity_map=0.05)
    assert task(dagbag, "evaluate_gate")(NIGHT, version, version, "0 impressions") == version
    assert current_version(env.warehouse) == "v1"  # publishing is the next task's job


def test_gate_refuses_parts_of_different_versions(dagbag, env):
    version = trained(env, als_map=0.08, popularity_map=0.05)
    with pytest.raises(RuntimeError, match="landing/ or models/TUNED.json changed"):
        task(dagbag, "evaluate_gate")(NIGHT, version, "20240107-0000000000", "0 impressions")


def test_publish_switches_current_to_a_newer_night(dagbag, env):
    version = trained(env, als_map=0.08, popularity_map=0.05)
    assert task(dagbag, "publish")(version) == version
    assert current_version(env.warehouse) == version


def test_rerunning_an_old_night_does_not_roll_serving_back(dagbag, env):
    from airflow.sdk.exceptions import AirflowSkipException

    newer = trained(env, als_map=0.08, popularity_map=0.05)
    task(dagbag, "publish")(newer)
    older = trained(env, als_map=0.08, popularity_map=0.05, end=END - dt.timedelta(days=1))
    with pytest.raises(AirflowSkipException, match="trained on later days is being served"):
        task(dagbag, "publish")(older)
    assert current_version(env.warehouse) == newer


def test_reload_is_skipped_without_a_service_url(dagbag, env):
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="SHOPRECS_SERVICE_URL"):
        task(dagbag, "reload")("v1")
