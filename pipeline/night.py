"""The night, declared once: its steps, what each needs, and how a step is run.

    extract ──▶ clean ──┬──▶ attribute ──┐
                        ├──▶ train ──────┴──▶ gate ──▶ publish ──▶ reload
                        └──▶ privacy

`shoprecs run` walks NIGHT in order (`run`, one Spark session for the whole night); the
Airflow DAG (dags/shoprecs_daily.py) makes one task of each step, with the same needs and
`run_step` inside each. So both run the same code and decide the same way:

* a step whose needs failed does not run (Airflow: upstream_failed), the others do: a
  failed gate still lets the privacy step run;
* a step that is not `fatal` (attribute) logs and alerts its failure, and what needs it
  runs anyway: the recommendations do not wait for the report on them;
* a step may decline (`Skipped`: publish, when the served version was trained on later
  days; reload, with no service to tell), and what needs it is skipped too;
* the quality gate runs once, in its own step; a publish that fails half-way switches
  back what it had switched (pipeline/steps.py, `publish_version`).

Every step holds the warehouse lock while it works (core/locks.py) and is idempotent for
its night: run twice, it changes nothing.

Run with: shoprecs run --date 2024-01-30   (Airflow: the DAG shoprecs_daily)
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.locks import warehouse_lock
from core.stores import publish_stores
from pipeline import steps

log = logging.getLogger(__name__)


class Skipped(Exception):  # noqa: N818 - a decision, not an error
    """A step declined, saying why; what needs it is skipped too."""


class Night:
    """One night's run: the settings, the days it extracts (`first`..`last`, the night
    being `last`), and the Spark session its steps share: the one given or running in
    this process, else one started when a step first needs it (`spark`) and stopped by
    `close`."""

    def __init__(self, settings, first: dt.date, last: dt.date, spark=None):
        self.settings, self.first, self.last = settings, first, last
        self._spark, self._owned = spark, False

    @property
    def spark(self):
        if self._spark is None:
            from pyspark.sql import SparkSession

            from pipeline.spark import get_spark

            running = SparkSession.getActiveSession()  # a test's: its owner stops it
            self._spark, self._owned = running or get_spark("shoprecs"), running is None
        return self._spark

    def close(self) -> None:
        if self._owned:
            self._spark.stop()
            self._spark, self._owned = None, False


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Night, dict], object]  # (the night, needed steps' results) -> a result
    needs: tuple[str, ...] = ()
    fatal: bool = True  # a failure fails the night (else: logged, alerted, survived)
    retries: int = 1  # under Airflow (more than one: with exponential backoff)
    doc: str = ""


def _extract(night: Night, up: dict) -> dict:
    manifests = steps.extract(night.settings, night.first, night.last)
    first, _ = steps.landed_range(manifests)  # the lookback's days included: clean them
    return {"first": first.isoformat(), "orders": sum(m["orders"] for m in manifests)}


def _clean(night: Night, up: dict) -> dict:
    first = dt.date.fromisoformat(up["extract"]["first"])
    return steps.clean(night.settings, first, night.last, night.spark)


def _attribute(night: Night, up: dict) -> dict:
    return {"impressions": steps.attribute(night.settings, night.last, night.spark)["impressions"]}


def _train(night: Night, up: dict) -> str:
    return steps.train(night.settings, night.last, night.spark)


def _gate(night: Night, up: dict) -> str:
    return steps.gate(night.settings, up["train"])


def _publish(night: Night, up: dict) -> str:
    spark = night.spark if "mongo" in publish_stores(night.settings) else None
    version = steps.publish_newest(night.settings, up["gate"], spark)
    if version is None:
        raise Skipped(f"{up['gate']} not published: a version trained on later days is "
                      "being served")
    return version


def _reload(night: Night, up: dict) -> dict:
    if not night.settings.service.url:
        raise Skipped("service.url is not set (SHOPRECS_SERVICE_URL): no service to tell; "
                      "it notices serving/CURRENT on its own")
    return steps.reload_service(night.settings, up["publish"])


def _privacy(night: Night, up: dict) -> dict:
    return steps.privacy(night.settings, night.last)


NIGHT = (
    Step("extract", _extract, retries=4,
         doc="the night's orders and the goods catalog from the order bus into landing/, "
             "and the bus.lookback_days days before it again (orders listed late)"),
    Step("clean", _clean, ("extract",),
         doc="Spark cleaning of the landed days into clean/orders and quarantine/"),
    Step("attribute", _attribute, ("clean",), fatal=False,
         doc="the impressions of the last attribution.days days joined with their clicks "
             "and the orders that followed, per A/B arm: reports/attribution/<day>.json"),
    Step("train", _train, ("clean",),
         doc="ALS, FP-Growth and the candidates of the training window ending that day, "
             "measured on its holdout: models/<version>/"),
    Step("gate", _gate, ("train", "attribute"), retries=0,
         doc="the quality gate: a model worse than it allows fails the night (no retry), "
             "and the served version stays; its verdict goes into the model's report"),
    Step("publish", _publish, ("gate",),
         doc="serving/<version> (and MongoDB) and the atomic switch of what is served; "
             "skipped for an old night whose version is older than the one served"),
    Step("reload", _reload, ("publish",),
         doc="POST <service.url>/admin/reload; skipped without a service URL (the service "
             "also polls serving/CURRENT)"),
    Step("privacy", _privacy, ("clean",),
         doc="the erasures the service deferred, and raw orders past "
             "privacy.raw_retention_days rewritten without phones"),
)
STEPS = {step.name: step for step in NIGHT}


def run_step(step: Step, night: Night, upstream: dict, timings: dict | None = None) -> object:
    """Run one step of `night` with its needs' results; its log lines (and `timings`) say
    when it started and how long it took. Skipped propagates; a non-fatal step's failure
    is logged and alerted, and gives None."""
    started = time.perf_counter()
    log.info("step %s: started", step.name)
    try:
        result = step.run(night, upstream)
    except Skipped as skipped:
        log.info("step %s: skipped: %s", step.name, skipped)
        raise
    except Exception:
        if step.fatal:
            raise
        from pipeline import alerts

        log.exception("step %s failed; the night goes on without it", step.name)
        alerts.send(night.settings, f"shoprecs: the {step.name} step of {night.last} "
                    "failed; the night goes on (see the log)", day=night.last.isoformat())
        result = None
    seconds = time.perf_counter() - started
    if timings is not None:
        timings[step.name] = round(seconds, 1)
    log.info("step %s: done in %.1f s", step.name, seconds)
    return result


def run(settings, first: dt.date, last: dt.date, spark=None,
        timings: dict | None = None) -> dict[str, object]:
    """`shoprecs run`: every step of NIGHT in order for the days first..last (the night of
    `last`), holding the warehouse throughout; each step's result by name (and its seconds
    in `timings`). A step whose needs failed or were skipped is skipped; the first fatal
    failure is raised once every step that could run has run."""
    results: dict[str, object] = {}
    missing: set[str] = set()  # failed or skipped
    failure: Exception | None = None
    night = Night(settings, first, last, spark)
    try:
        with warehouse_lock(settings):
            for step in NIGHT:
                if missing.intersection(step.needs):
                    log.info("step %s: skipped (it needs %s)", step.name,
                             ", ".join(sorted(missing.intersection(step.needs))))
                    missing.add(step.name)
                    continue
                try:
                    results[step.name] = run_step(
                        step, night, {n: results[n] for n in step.needs}, timings)
                except Skipped:
                    missing.add(step.name)
                except Exception as exc:
                    missing.add(step.name)
                    failure = failure or exc
                    log.error("step %s failed: %s", step.name, exc)
    finally:
        night.close()
    if failure is not None:
        raise failure
    return results
