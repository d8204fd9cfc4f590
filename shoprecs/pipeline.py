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


def publish(settings: Settings, version: str | None = None) -> str:
    from engine.snapshot import publish as publish_snapshot

    if version is None:
        latest = settings.warehouse / "models" / "LATEST"
        if not latest.exists():
            raise FileNotFoundError(f"{latest} missing: no model trained yet (shoprecs train)")
        version = latest.read_text().strip()
    publish_snapshot(settings.warehouse, version)
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
