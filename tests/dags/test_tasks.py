"""The DAG's steps called in-process on a hand-made warehouse: the decisions they take
without Spark (gate, publish, reload), fast. tests/dags/test_dag_run.py runs them for real."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from engine import current_version
from models import train
from tests.conftest import write_model

END = dt.date(2024, 1, 7)


def step(name: str, settings, upstream: dict, end: dt.date = END):
    """The DAG's task for step `name` (dags/shoprecs_daily.py), for the night of `end`."""
    from dags.shoprecs_daily import run_step
    from pipeline.night import Night

    return run_step(name, upstream, Night(settings, end, end))


def trained(settings, als_map: float, popularity_map: float, end=END) -> str:
    """A complete model for the window ending at `end`, as both training parts leave it."""
    plan = train.plan(settings, end)
    out = write_model(settings.root, plan.version)
    models = {"hybrid": {"all": {"map": als_map}}, "popularity": {"all": {"map": popularity_map}}}
    (out / "metrics.json").write_text(json.dumps({
        "version": plan.version, "published_model": "hybrid", "window": plan.params["window"],
        "evaluation": {"k": 10, "models": models}}))
    return plan.version


def test_failed_gate_fails_the_task_for_good_and_keeps_the_served_version(published):
    from airflow.sdk.exceptions import AirflowFailException

    version = trained(published, als_map=0.01, popularity_map=0.05)
    with pytest.raises(AirflowFailException, match="does not beat the popularity baseline"):
        step("gate", published, {"train": version, "attribute": None})
    assert current_version(published.root) == "v1"
    report = (published.root / "models" / version / "report.html").read_text()
    assert "does not beat the popularity baseline" in report  # the verdict, on its report


def test_gate_passes_a_good_model_and_its_report_keeps_the_attribution(published):
    version = trained(published, als_map=0.08, popularity_map=0.05)
    reports = published.root / "reports" / "attribution"
    reports.mkdir(parents=True)
    (reports / f"{END}.json").write_text(json.dumps({
        "date": END.isoformat(), "first_day": END.isoformat(), "window_hours": 24,
        "impressions": 7, "experiments": [], "routes": [], "daily": []}))
    assert step("gate", published, {"train": version, "attribute": None}) == version
    assert current_version(published.root) == "v1"  # publishing is the next step's job
    report = (published.root / "models" / version / "report.html").read_text()
    assert "Did the recommendations sell?" in report and "Passed." in report


def test_publish_switches_current_to_a_newer_night(published):
    version = trained(published, als_map=0.08, popularity_map=0.05)
    assert step("publish", published, {"gate": version}) == version
    assert current_version(published.root) == version


def test_rerunning_an_old_night_does_not_roll_serving_back(published):
    from airflow.sdk.exceptions import AirflowSkipException

    newer = trained(published, als_map=0.08, popularity_map=0.05)
    step("publish", published, {"gate": newer})
    older = trained(published, als_map=0.08, popularity_map=0.05,
                    end=END - dt.timedelta(days=1))
    with pytest.raises(AirflowSkipException, match="trained on later days is being served"):
        step("publish", published, {"gate": older}, END - dt.timedelta(days=1))
    assert current_version(published.root) == newer


def test_reload_is_skipped_without_a_service_url(published):
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="SHOPRECS_SERVICE_URL"):
        step("reload", published, {"publish": "v1"})
