"""The nightly steps, callable from the command line and from Airflow alike.

Each step takes the settings and its dates, does one job, and returns something small
(stats or a version) that the next step or the operator can read. Spark steps run in a
session built from spark-defaults.conf; `session` lets `run_all` share one JVM.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import contextmanager, nullcontext

from shoprecs.config import Settings

log = logging.getLogger(__name__)


@contextmanager
def timed(step: str, timings: dict | None = None):
    started = time.perf_counter()
    log.info("step %s: started", step)
    yield
    seconds = time.perf_counter() - started
    if timings is not None:
        timings[step] = round(seconds, 1)
    log.info("step %s: done in %.1f s", step, seconds)


def _session(spark):
    from shoprecs.spark import spark_session

    return nullcontext(spark) if spark is not None else spark_session("shoprecs")


def extract(settings: Settings, start: dt.date, end: dt.date,
            refetch: bool = False) -> list[dict]:
    from etl.bus import BusClient
    from etl.bus import extract as extract_range

    client = BusClient.from_settings(settings)
    return extract_range(client, start, end, settings.warehouse, refetch)


def clean(settings: Settings, start: dt.date, end: dt.date, spark=None) -> dict:
    from etl import clean as clean_job

    with _session(spark) as session:
        return clean_job.run(session, settings, start, end)


def train(settings: Settings, end: dt.date, spark=None) -> str:
    from models import train as train_job

    with _session(spark) as session:
        return train_job.run(session, settings, end)


def tune(settings: Settings, end: dt.date, quick: bool = False, spark=None) -> dict:
    from models import tune as tune_job

    grids = {}
    if quick:
        grids = {"als_grid": tune_job.ALS_GRID[:2], "weight_grid": tune_job.WEIGHT_GRID[::4]}
    with _session(spark) as session:
        return tune_job.run(session, settings, end, **grids)


def _report_gate(model_dir, candidate: dict, served: dict | None, failures: list[str],
                 skipped: bool) -> None:
    """Re-render the model's report.html with the gate's verdict on it."""
    import os

    from models import report

    gate = {"passed": not failures, "failures": failures, "skipped_by_operator": skipped}
    tmp = model_dir / ".report.html.tmp"
    tmp.write_text(report.render({**candidate, "gate": gate}, served), encoding="utf-8")
    os.replace(tmp, model_dir / "report.html")


def publish(settings: Settings, version: str | None = None, skip_gate: bool = False) -> str:
    """Gate the trained `version` (default models/LATEST), then serve it.

    Raises QualityGateError, leaving serving/CURRENT as it was, when the model is worse
    than the gate allows."""
    import json

    from engine.snapshot import current_version
    from engine.snapshot import publish as publish_snapshot
    from models.gate import GatePolicy, QualityGateError, check

    root = settings.warehouse
    if version is None:
        latest = root / "models" / "LATEST"
        if not latest.exists():
            raise FileNotFoundError(f"{latest} missing: no model trained yet (shoprecs train)")
        version = latest.read_text().strip()
    metrics_path = root / "models" / version / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} missing: model {version} is not trained")
    served_version = current_version(root)
    served = None
    if served_version and served_version != version:
        manifest = root / "serving" / served_version / "manifest.json"
        served = json.loads(manifest.read_text()).get("metrics") if manifest.exists() else None
    policy = GatePolicy(settings.gate_metric, settings.gate_mode,
                        settings.gate_min_ratio_over_popularity, settings.gate_max_drop)
    candidate = json.loads(metrics_path.read_text())
    failures = check(candidate, served, policy)
    _report_gate(root / "models" / version, candidate, served, failures, skip_gate)
    if failures and not skip_gate:
        raise QualityGateError(f"model {version} not published, {served_version or 'nothing'} "
                               f"stays served: " + "; ".join(failures))
    for failure in failures:
        log.warning("gate skipped by the operator: %s", failure)
    publish_snapshot(root, version)
    return version


def run_all(settings: Settings, start: dt.date, end: dt.date, timings: dict | None = None,
            spark=None) -> str:
    """extract -> clean -> train -> publish for start..end, in one Spark session."""
    with timed("extract", timings):
        extract(settings, start, end)
    with _session(spark) as session:
        with timed("clean", timings):
            clean(settings, start, end, session)
        with timed("train", timings):
            version = train(settings, end, session)
    with timed("publish", timings):
        publish(settings, version)
    return version
