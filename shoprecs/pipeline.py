"""The nightly steps, callable from the command line and from Airflow alike.

Each step takes the settings and its dates, does one job, and returns something small
(stats or a version) that the next step or the operator can read. Spark steps run in a
session built from spark-defaults.conf; `session` lets `run_all` share one JVM.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from contextlib import contextmanager, nullcontext

from core.config import Settings
from engine.lock import warehouse_lock

log = logging.getLogger(__name__)


def locked(step):
    """The step holds the warehouse (engine/lock.py): one writing run at a time."""
    @functools.wraps(step)
    def run(settings: Settings, *args, **kwargs):
        with warehouse_lock(settings):
            return step(settings, *args, **kwargs)
    return run


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


@locked
def extract(settings: Settings, start: dt.date, end: dt.date,
            refetch: bool = False) -> list[dict]:
    from engine.privacy import FileRegister
    from etl.bus import BusClient
    from etl.bus import extract as extract_range
    from etl.privacy import scrub

    client = BusClient.from_settings(settings)
    forgotten = FileRegister(settings.warehouse).read()
    if forgotten:
        client.scrub = lambda orders: scrub(settings, orders, forgotten)
    return extract_range(client, start, end, settings.warehouse, refetch,
                         settings.bus_lookback_days)


def landed_range(manifests: list[dict]) -> tuple[dt.date, dt.date]:
    """The first and last day `extract` landed (the lookback's included): what to clean."""
    found = sorted(m["dt"] for m in manifests)
    return dt.date.fromisoformat(found[0]), dt.date.fromisoformat(found[-1])


def catalog(settings: Settings) -> dict:
    """`shoprecs catalog`: pull /goods and publish it as the catalog in force (availability
    and categories for request-time filtering, engine/shoprules.py), without a retrain. A
    failed pull raises and leaves the catalog in force as it was."""
    from engine.shoprules import publish_catalog
    from etl.bus import BusClient, fetch_goods

    goods = fetch_goods(BusClient.from_settings(settings))
    name = publish_catalog(settings.warehouse, goods)
    return {"catalog": name, "goods": len(goods),
            "unavailable": sum(g.get("available") is False for g in goods)}


@locked
def clean(settings: Settings, start: dt.date, end: dt.date, spark=None) -> dict:
    from engine.privacy import check_keys
    from etl import clean as clean_job
    from etl.bus import days

    clean_job.landed_paths(settings.warehouse, days(start, end))  # NoLandedData, before Spark
    check_keys(settings, adopt=True)  # ConfigError when the key is not the warehouse's
    with _session(spark) as session:
        return clean_job.run(session, settings, start, end)


@locked
def attribute(settings: Settings, day: dt.date, spark=None) -> dict:
    """The impressions of the last attribution.days days up to `day` joined with their clicks
    and the orders that followed: reports/attribution/<day>.json (models/attribution.py)."""
    from models import attribution

    with _session(spark) as session:
        return attribution.run(session, settings, day)


def attribute_quietly(settings: Settings, day: dt.date, spark=None) -> dict | None:
    """`attribute`, for the night: a failure is logged, never fatal (the recommendations do
    not wait for the report on them)."""
    try:
        return attribute(settings, day, spark)
    except Exception:  # noqa: BLE001 - analytics must not cost the shop its models
        log.exception("attribution for %s failed; the night goes on without its report "
                      "(run `shoprecs attribute --date %s` to retry)", day, day)
        return None


@locked
def train(settings: Settings, end: dt.date, spark=None) -> str:
    from models import train as train_job

    with _session(spark) as session:
        return train_job.run(session, settings, end)


@locked
def train_als(settings: Settings, end: dt.date, spark=None) -> str:
    """The ALS part of the model for the window ending at `end`; returns its version."""
    from models import train as train_job

    plan = train_job.plan(settings, end)
    if train_job.part_done(plan, "als") is None:  # else no JVM to start at all
        with _session(spark) as session:
            train_job.train_als(session, plan)
    return plan.version


@locked
def train_fpgrowth(settings: Settings, end: dt.date, spark=None) -> str:
    """The FP-Growth part of the model for the window ending at `end`; returns its version."""
    from models import train as train_job

    plan = train_job.plan(settings, end)
    if train_job.part_done(plan, "fpgrowth") is None:
        with _session(spark) as session:
            train_job.train_fpgrowth(session, plan)
    return plan.version


@locked
def finalize(settings: Settings, end: dt.date, expected: set[str] | None = None) -> str:
    """metrics.json, report, _SUCCESS and models/LATEST once both parts are trained (no Spark).

    `expected`: the versions the part steps reported; they must all be this plan's."""
    from models import train as train_job

    plan = train_job.plan(settings, end)
    if expected and expected != {plan.version}:
        raise RuntimeError(
            f"the training steps for {end} wrote {sorted(expected)} but the data and "
            f"parameters now give {plan.version}: landing/ or models/TUNED.json changed "
            "during the run; clear the training tasks so both parts train it again")
    from engine.versions import served_model

    return train_job.finalize(plan, served_model(settings)[1])


@locked
def tune(settings: Settings, end: dt.date, quick: bool | None = None, spark=None) -> dict:
    """`shoprecs tune`: the search of models/tune.py; `quick` (default tune.quick) searches
    2 ALS settings and a fifth of the blends."""
    from models import tune as tune_job

    grids = {}
    if settings.tune_quick if quick is None else quick:
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


@locked
def gate(settings: Settings, version: str | None = None, skip_gate: bool = False) -> str:
    """Check the trained `version` (default models/LATEST) against the quality gate and
    write the verdict into its report.html; return the version.

    Raises QualityGateError when the model is worse than the gate allows (unless
    `skip_gate`: then the failures are logged as warnings)."""
    import json

    from engine.versions import served_model
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
    served_version, served = served_model(settings)
    if served_version == version:
        served = None
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
    return version


STORES = ("snapshot", "mongo", "both")


@locked
def publish(settings: Settings, version: str | None = None, skip_gate: bool = False,
            store: str | None = None, spark=None) -> str:
    """Gate the trained `version` (default models/LATEST), then serve it from `store`
    (default publish.store): the serving/ folder, MongoDB (a Spark job), or both, MongoDB
    first so a failed MongoDB write leaves both stores as they were; then tags the version's
    MLflow run as published and served (models/tracking.py; never fails).

    Raises QualityGateError, leaving serving/CURRENT as it was, when the model is worse
    than the gate allows."""
    from engine.snapshot import publish as publish_snapshot

    store = store or settings.publish_store
    if store not in STORES:
        raise ValueError(f"publish.store must be one of {', '.join(STORES)}, got {store!r}")
    version = gate(settings, version, skip_gate)
    if store in ("mongo", "both"):
        from models.publish_mongo import publish_version

        with _session(spark) as session:
            publish_version(session, settings, version)
    if store in ("snapshot", "both"):
        publish_snapshot(settings.warehouse, version)
    from models import tracking

    tracking.mark_published(tracking.Target.from_settings(settings), version,
                            settings.warehouse / "models" / version)
    return version


@locked
def publish_nightly(settings: Settings, version: str) -> str | None:
    """`publish`, unless the served version was trained on a window ending later than
    `version`'s: re-running an old night never rolls serving back (an operator does that,
    explicitly, with `shoprecs publish --version V`). Returns None when it kept the newer."""
    import json

    from engine.versions import served_model

    root = settings.warehouse
    served, served_metrics = served_model(settings)

    def window_end(metrics):
        return ((metrics or {}).get("window") or [None, ""])[1]

    if served and served != version:
        path = root / "models" / version / "metrics.json"
        mine = window_end(json.loads(path.read_text()) if path.exists() else None)
        theirs = window_end(served_metrics)
        if mine and theirs and theirs > mine:
            log.warning("not publishing %s (trained through %s): the served %s was trained "
                        "through %s; roll back explicitly with `shoprecs publish --version "
                        "%s` if that is what you want", version, mine, served, theirs, version)
            return None
    return publish(settings, version)


class _ServiceBusy(Exception):
    """The service answered 5xx: worth asking again."""


def _admin_key(settings: Settings) -> str | None:
    keys = settings.admin_api_keys or ""  # comma-separated, or a list from a TOML file
    if isinstance(keys, str):
        keys = keys.split(",")
    keys = [k.strip() for k in keys if k and k.strip()]
    return keys[0] if keys else None


def reload_service(settings: Settings, version: str, attempts: int = 3) -> dict:
    """Ask the service at `service.url` to load serving/CURRENT now (POST /admin/reload).

    Never raises: a service that cannot be reached or refuses is logged as a warning and
    reported in the result, because the service also polls serving/CURRENT and will pick
    up `version` by itself. Returns {"reloaded": bool, "detail": str}."""
    import requests
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    url = settings.service_url.rstrip("/") + "/admin/reload"
    key = _admin_key(settings)
    if key is None:
        detail = (f"service.url is set but admin.api_keys is empty: cannot POST {url}; set "
                  "SHOPRECS_ADMIN_API_KEYS (the service will still notice serving/CURRENT)")
        log.warning(detail)
        return {"reloaded": False, "detail": detail}
    retrying = Retrying(stop=stop_after_attempt(attempts), reraise=True,
                        wait=wait_exponential(multiplier=0.5, max=5),
                        retry=retry_if_exception_type((requests.RequestException, _ServiceBusy)))
    try:
        for attempt in retrying:
            with attempt:
                resp = requests.post(url, headers={"X-API-Key": key}, timeout=10)
                if resp.status_code >= 500:
                    raise _ServiceBusy(f"HTTP {resp.status_code}")
    except (requests.RequestException, _ServiceBusy) as exc:
        detail = (f"POST {url} failed after {attempts} attempts ({exc}); the service will "
                  f"pick up {version} when it next polls serving/CURRENT")
        log.warning(detail)
        return {"reloaded": False, "detail": detail}
    if resp.status_code >= 400:
        hint = " (check SHOPRECS_ADMIN_API_KEYS)" if resp.status_code in (401, 403) else ""
        detail = f"POST {url}: HTTP {resp.status_code}{hint}: {resp.text[:200]}"
        log.warning(detail)
        return {"reloaded": False, "detail": detail}
    log.info("asked the service at %s to reload: HTTP %d", settings.service_url,
             resp.status_code)
    return {"reloaded": True, "detail": f"HTTP {resp.status_code}: {resp.text[:200]}"}


@locked
def privacy(settings: Settings, day: dt.date) -> dict:
    """The night's personal-data step: erasures the service deferred, then raw retention
    (docs/privacy.md)."""
    from etl import privacy as privacy_job

    erased = privacy_job.erase_pending(settings)
    kept = privacy_job.retention(settings, day, apply=True)
    return {"erased": len(erased), "retention": {k: kept[k] for k in ("limit", "orders")},
            "days_rewritten": len(kept["days"])}


@locked
def run_all(settings: Settings, start: dt.date, end: dt.date, timings: dict | None = None,
            spark=None) -> str:
    """extract -> clean -> attribute -> train -> publish -> privacy for start..end, in one
    Spark session."""
    with timed("extract", timings):
        first, last = landed_range(extract(settings, start, end))
    with _session(spark) as session:
        with timed("clean", timings):
            clean(settings, first, last, session)
        with timed("attribute", timings):
            attribute_quietly(settings, end, session)
        with timed("train", timings):
            version = train(settings, end, session)
    with timed("publish", timings):
        publish(settings, version)
    with timed("privacy", timings):
        privacy(settings, end)
    return version
