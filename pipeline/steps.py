"""The units of work of the night and of the commands: each takes the settings and its
dates, does one job under the warehouse lock, and returns something small (stats or a
version). pipeline/night.py declares the night from them; the command line calls them one
by one (`shoprecs clean`, `shoprecs publish`, ...). A Spark step uses the session it is
given, else the one this process runs, else one of its own (pipeline/spark.py).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from contextlib import nullcontext

from core.config import Settings
from core.locks import warehouse_lock
from core.stores import publish_stores

log = logging.getLogger(__name__)


def locked(step):
    """The step holds the warehouse (core/locks.py): one writing run at a time."""
    @functools.wraps(step)
    def run(settings: Settings, *args, **kwargs):
        with warehouse_lock(settings):
            return step(settings, *args, **kwargs)
    return run


def _session(spark):
    from pipeline.spark import spark_session

    return nullcontext(spark) if spark is not None else spark_session("shoprecs")


@locked
def extract(settings: Settings, start: dt.date, end: dt.date,
            refetch: bool = False) -> list[dict]:
    from engine.forgotten import FileRegister
    from etl.bus import BusClient
    from etl.bus import extract as extract_range
    from privacy.erasure import scrub

    client = BusClient.from_settings(settings.bus)
    forgotten = FileRegister(settings.root).read()
    if forgotten:
        client.scrub = lambda orders: scrub(settings, orders, forgotten)
    return extract_range(client, start, end, settings.root, refetch,
                         settings.bus.lookback_days)


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

    goods = fetch_goods(BusClient.from_settings(settings.bus))
    name = publish_catalog(settings.root, goods)
    return {"catalog": name, "goods": len(goods),
            "unavailable": sum(g.get("available") is False for g in goods)}


@locked
def clean(settings: Settings, start: dt.date, end: dt.date, spark=None) -> dict:
    from etl import clean as clean_job
    from etl.bus import days
    from privacy.keys import check_keys

    clean_job.landed_paths(settings.root, days(start, end))  # NoLandedData, before Spark
    check_keys(settings, adopt=True)  # ConfigError when the key is not the warehouse's
    with _session(spark) as session:
        return clean_job.run(session, settings, start, end)


@locked
def attribute(settings: Settings, day: dt.date, spark=None) -> dict:
    """The impressions of the last attribution.days days up to `day` joined with their clicks
    and the orders that followed: reports/attribution/<day>.json (experiments/attribution.py)."""
    from experiments import attribution

    with _session(spark) as session:
        return attribution.run(session, settings, day)


@locked
def train(settings: Settings, end: dt.date, spark=None) -> str:
    from etl.clean import clean_orders
    from models import train as train_job

    clean_orders(settings.root)  # NoLandedData, before Spark
    with _session(spark) as session:
        return train_job.run(session, settings, end)


@locked
def tune(settings: Settings, end: dt.date, quick: bool | None = None, spark=None) -> dict:
    """`shoprecs tune`: the search of models/tune.py; `quick` (default tune.quick) searches
    2 ALS settings and a fifth of the blends."""
    from models import tune as tune_job

    grids = {}
    if settings.tune.quick if quick is None else quick:
        grids = {"als_grid": tune_job.ALS_GRID[:2], "weight_grid": tune_job.WEIGHT_GRID[::4]}
    with _session(spark) as session:
        return tune_job.run(session, settings, end, **grids)


@locked
def gate(settings: Settings, version: str | None = None, skip_gate: bool = False) -> str:
    """Check the trained `version` (default models/LATEST) against the quality gate and
    write the verdict into its report.html; return the version.

    Raises QualityGateError when the model is worse than the gate allows (unless
    `skip_gate`: then the failures are logged as warnings)."""
    from engine.versions import served_model
    from models import report
    from models.gate import GatePolicy, QualityGateError, check

    root = settings.root
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
    policy = GatePolicy(settings.gate.metric, settings.gate.mode,
                        settings.gate.min_ratio_over_popularity, settings.gate.max_drop)
    failures = check(json.loads(metrics_path.read_text()), served, policy)
    report.write(root / "models" / version, served, gate={
        "passed": not failures, "failures": failures, "skipped_by_operator": skip_gate})
    if failures and not skip_gate:
        raise QualityGateError(f"model {version} not published, {served_version or 'nothing'} "
                               f"stays served: " + "; ".join(failures))
    for failure in failures:
        log.warning("gate skipped by the operator: %s", failure)
    return version


@locked
def publish(settings: Settings, version: str | None = None, skip_gate: bool = False,
            store: str | None = None, spark=None) -> str:
    """`shoprecs publish`: gate the trained `version` (default models/LATEST), then serve it
    (`publish_version`). Raises QualityGateError, leaving what is served as it was, when
    the model is worse than the gate allows."""
    publish_stores(settings, store)  # a store that does not exist: before anything is done
    return publish_version(settings, gate(settings, version, skip_gate), store, spark)


@locked
def publish_version(settings: Settings, version: str, store: str | None = None,
                    spark=None) -> str:
    """Serve the trained `version` from `store` (default publish.store): MongoDB (a Spark
    job) first, then the serving/ folder; a store that fails after another switched to
    the version switches that one back, so the stores never serve different versions.
    Then tags the version's MLflow run as published and served (never fails)."""
    from engine.snapshot import current_version
    from engine.snapshot import publish as publish_snapshot
    from engine.versions import rollback
    from models import tracking

    switched: list[tuple[str, str | None]] = []  # (store, what it served before)
    try:
        for kind in publish_stores(settings, store):
            if kind == "mongo":
                from core.stores import mongo
                from engine.mongo import MongoStore
                from pipeline.mongo import publish_version as publish_mongo

                with _session(spark) as session:
                    switched.append(("mongo", publish_mongo(session, settings, version)))
            else:
                before = current_version(settings.root)
                publish_snapshot(settings.root, version)
                switched.append(("snapshot", before))
    except Exception:
        for kind, before in reversed(switched):
            if before is None or before == version:
                continue
            log.error("publishing %s failed: %s switches back to %s", version, kind, before)
            if kind == "mongo":
                MongoStore(mongo(settings)).rollback(before)
            else:
                rollback(settings.root, before)
        raise
    tracking.mark_published(tracking.Target.from_settings(settings), version,
                            settings.root / "models" / version)
    return version


@locked
def publish_newest(settings: Settings, version: str, spark=None) -> str | None:
    """`publish_version`, unless the served version was trained on a window ending later
    than `version`'s: re-running an old night never rolls serving back (an operator does
    that, explicitly, with `shoprecs publish --version V`). None when it kept the newer."""
    from engine.versions import served_model

    served, served_metrics = served_model(settings)

    def window_end(metrics):
        return ((metrics or {}).get("window") or [None, ""])[1]

    if served and served != version:
        path = settings.root / "models" / version / "metrics.json"
        mine = window_end(json.loads(path.read_text()) if path.exists() else None)
        theirs = window_end(served_metrics)
        if mine and theirs and theirs > mine:
            log.warning("not publishing %s (trained through %s): the served %s was trained "
                        "through %s; roll back explicitly with `shoprecs publish --version "
                        "%s` if that is what you want", version, mine, served, theirs, version)
            return None
    return publish_version(settings, version, spark=spark)


class _ServiceBusy(Exception):
    """The service answered 5xx: worth asking again."""


def _admin_key(settings: Settings) -> str | None:
    """The first of admin.api_keys: comma-separated (core/config.py joins a TOML list)."""
    return next((k.strip() for k in settings.admin.api_keys.split(",") if k.strip()), None)


def reload_service(settings: Settings, version: str, attempts: int = 3) -> dict:
    """Ask the service at `service.url` to load serving/CURRENT now (POST /admin/reload).

    Never raises: a service that cannot be reached or refuses is logged as a warning and
    reported in the result, because the service also polls serving/CURRENT and will pick
    up `version` by itself. Returns {"reloaded": bool, "detail": str}."""
    import requests
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    url = settings.service.url.rstrip("/") + "/admin/reload"
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
    log.info("asked the service at %s to reload: HTTP %d", settings.service.url,
             resp.status_code)
    return {"reloaded": True, "detail": f"HTTP {resp.status_code}: {resp.text[:200]}"}


@locked
def privacy(settings: Settings, day: dt.date) -> dict:
    """The night's personal-data step: erasures the service deferred, then raw retention
    (docs/privacy.md)."""
    from privacy.erasure import erase_pending
    from privacy.retention import retention

    erased = erase_pending(settings)
    kept = retention(settings, day, apply=True)
    return {"erased": len(erased), "retention": {k: kept[k] for k in ("limit", "orders")},
            "days_rewritten": len(kept["days"])}
