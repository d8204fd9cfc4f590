"""Tracked experiments: every `train` and `tune` run, and every publish, recorded in MLflow.

The one module that imports mlflow (the client of the `mlflow-skinny` package, imported
only when a run is logged: it costs a second at start). What is logged:

    train    one run per model version (run name and tag `shoprecs.version`): the parameters
             metrics.json records (`als.rank`, `hybrid.w_als`, ..., `window.start`,
             `window.end`, `window.cut`), the holdout figures as `<model>.<mode>.<metric>`
             (`hybrid.all.map`, `popularity.new.ndcg`), the counts (`trained_on.lines`,
             `fpgrowth.rules`, ...), metrics.json and report.html as artifacts. Its run id
             is also written to models/<version>/mlflow.json.
    tune     one run with the parameters chosen and the objective, each trial a nested run,
             TUNED.json (every trial) as an artifact.
    publish  the version's train run is tagged `shoprecs.published=<UTC time>` and
             `shoprecs.served=true` (taken off the run served before); the report, now with
             the gate's verdict, replaces the one logged at training.

Where (core/config.py, [tracking]): `uri` "" is a SQLite store in the warehouse,
`<warehouse>/mlflow.db`, with the artifacts in `<warehouse>/mlartifacts/`: MLflow 3's
default backend, written without a server, opened by `mlflow server --backend-store-uri`
(`make mlflow`). MLflow's file store (`./mlruns`) is in maintenance mode and refused unless
opted in, so it is not used. `uri` may name a tracking server (http://...) or a database.

Tracking never fails a night: without mlflow installed, or with the store unreachable, one
warning line is logged and the step goes on. A server that does not answer costs at most
10 s, not MLflow's minutes of retries (MLFLOW_HTTP_REQUEST_TIMEOUT 10 and _MAX_RETRIES 0
unless set; each retry would log a line of its own).

Run with: python -m models.tracking   (prints the configured store and artifact location:
`make mlflow` opens them)
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.files import atomic_write

log = logging.getLogger(__name__)

VERSION_TAG = "shoprecs.version"
KIND_TAG = "shoprecs.kind"  # "train" or "tune"
PUBLISHED_TAG = "shoprecs.published"
SERVED_TAG = "shoprecs.served"
RUN_FILE = "mlflow.json"  # models/<version>/: the train run's id
ARTIFACTS = ("metrics.json", "report.html")
_SERVERS = ("http:", "https:", "databricks")  # stores that choose the artifact location


@dataclass(frozen=True)
class Target:
    """Where runs are tracked: the store's URI, the experiment, and where a new experiment
    keeps its artifacts (None: the tracking server decides)."""

    uri: str = field(repr=False)  # a server's URI may carry credentials
    experiment: str = "shoprecs"
    enabled: bool = True
    artifacts: str | None = None

    @classmethod
    def from_settings(cls, settings) -> Target:
        warehouse = settings.root.resolve()
        uri = settings.tracking.uri or f"sqlite:///{warehouse / 'mlflow.db'}"
        artifacts = None if uri.startswith(_SERVERS) else (warehouse / "mlartifacts").as_uri()
        return cls(uri, settings.tracking.experiment, bool(settings.tracking.enabled), artifacts)

    @property
    def empty(self) -> bool:
        """A local SQLite store not created yet: nothing was ever tracked in it (so nothing
        to look up, and no reason to import mlflow and create it)."""
        prefix = "sqlite:///"
        return self.uri.startswith(prefix) and not Path(self.uri[len(prefix):]).exists()


def _param(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flatten(prefix: str, value) -> dict:
    """`value` with its nested dicts' entries by dotted path under `prefix`."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {path: leaf for key, item in value.items()
            for path, leaf in _flatten(f"{prefix}.{key}" if prefix else str(key), item).items()}


def _numbers(flat: dict) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def train_params(metrics: dict) -> dict[str, str]:
    """A train run's parameters from its metrics.json: every entry of `params` by its
    dotted path (`als.rank`), the window's days, the model published, the tuning used."""
    params = dict(metrics.get("params") or {})
    start, end = params.pop("window", None) or metrics.get("window") or (None, None)
    evaluation = metrics.get("evaluation") or {}
    selection = evaluation.get("selection") or {}
    flat = {**_flatten("", params), "window.start": start, "window.end": end,
            "window.cut": evaluation.get("cut"), "holdout.k": evaluation.get("k"),
            "published_model": metrics.get("published_model"),
            **_flatten("tuning", metrics.get("tuning") or {}),
            **{f"selection.{k}": selection[k] for k in ("published", "rebuy", "by")
               if k in selection}}
    return {k: _param(v) for k, v in flat.items()}


def train_metrics(metrics: dict) -> dict[str, float]:
    """A train run's metrics from its metrics.json: every holdout figure as
    `<model>.<mode>.<metric>`, the counts (`trained_on.*`, `fpgrowth.*`,
    `holdout.test_users`) and the selection's margin and interval."""
    evaluation = metrics.get("evaluation") or {}
    selection = evaluation.get("selection") or {}
    low, high = selection.get("interval") or (None, None)
    return _numbers({**_flatten("", evaluation.get("models") or {}),
                     **_flatten("trained_on", metrics.get("trained_on") or {}),
                     **_flatten("fpgrowth", metrics.get("fpgrowth") or {}),
                     "holdout.test_users": evaluation.get("test_users"),
                     "selection.margin": selection.get("margin"),
                     "selection.interval_low": low, "selection.interval_high": high})


def _client(target: Target):
    """(MlflowClient, experiment id), creating the experiment on first use."""
    # Before mlflow is imported: a server that does not answer costs seconds, not the 4
    # minutes of MLflow's defaults; GitPython (mlflow-skinny's) says nothing without git.
    # The operator's own settings of these variables win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    from mlflow import MlflowClient

    # Creating the SQLite store logs its table creation at INFO: one warning is enough.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=target.uri)
    found = client.get_experiment_by_name(target.experiment)
    if found is not None:
        return client, found.experiment_id
    return client, client.create_experiment(target.experiment,
                                            artifact_location=target.artifacts)


@contextmanager
def _never_fails(what: str) -> Iterator[None]:
    """Run the block; any failure is one warning line, never an exception."""
    try:
        yield
    except ImportError as exc:
        log.warning("%s not tracked: mlflow is not installed (%s); "
                    "pip install mlflow-skinny", what, exc)
    except Exception as exc:  # whatever the store or the network throws
        log.warning("%s not tracked in MLflow: %s: %s", what, type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")


def _log(client, run_id: str, metrics: dict[str, float], params: dict[str, str]) -> None:
    """Log `metrics` and `params` (the client splits them into batches MLflow accepts)."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in sorted(metrics.items())],
                     params=[Param(k, v) for k, v in sorted(params.items())])


def _runs(client, experiment_id: str, tags: dict[str, str]) -> list:
    """The active runs carrying every tag of `tags` (newest first)."""
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return list(client.search_runs([experiment_id], filter_string=where,
                                   order_by=["attributes.start_time DESC"]))


def _train_tags(version: str) -> dict[str, str]:
    return {VERSION_TAG: version, KIND_TAG: "train"}


def log_train(target: Target, metrics: dict, out: Path) -> str | None:
    """Record a trained version (its metrics.json as `metrics`, its folder `out`); return
    the run id. A version logged before (a finalize re-run) has its run replaced."""
    if not target.enabled:
        return None
    version = metrics["version"]
    with _never_fails(f"model {version}"):
        client, experiment_id = _client(target)
        for old in _runs(client, experiment_id, _train_tags(version)):
            client.delete_run(old.info.run_id)
        run = client.create_run(experiment_id, run_name=version, tags={
            **_train_tags(version), "shoprecs.window_end": (metrics.get("window") or ["", ""])[1]})
        run_id = run.info.run_id
        _log(client, run_id, train_metrics(metrics), train_params(metrics))
        for name in ARTIFACTS:
            if (out / name).exists():
                client.log_artifact(run_id, str(out / name))
        client.set_terminated(run_id)
        atomic_write(out / RUN_FILE, json.dumps({"run_id": run_id,
                                                 "experiment": target.experiment}))
        log.info("model %s tracked in MLflow: run %s (experiment %s)", version, run_id,
                 target.experiment)
        return run_id
    return None


def _trial(trial: dict) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, parameters) of a tune trial (or of the choice: the same keys)."""
    params = {**_flatten("als", trial.get("als") or {}),
              **_flatten("hybrid", trial.get("hybrid") or {}), "stage": trial.get("stage")}
    metrics = _numbers({"score": trial.get("score"), "fit_seconds": trial.get("fit_seconds"),
                        **_flatten("", trial.get("metrics") or {})})
    return metrics, {k: _param(v) for k, v in params.items() if v is not None}


def log_tune(target: Target, report: dict, window: tuple[str, str],
             tuned: Path | None = None) -> str | None:
    """Record a search (`report`: what TUNED.json holds, `tuned` its path) on `window`
    (start, end): the parameters chosen and the objective, each trial a nested run."""
    if not target.enabled:
        return None
    with _never_fails(f"tuning of {window[0]}..{window[1]}"):
        client, experiment_id = _client(target)
        parent = client.create_run(experiment_id, run_name=f"tune-{window[1]}", tags={
            KIND_TAG: "tune", "shoprecs.window_end": window[1]}).info.run_id
        metrics, params = _trial({**report, "stage": "chosen"})
        validation = report.get("validation") or [None, None]
        params.update({"window.start": window[0], "window.end": window[1],
                       "validation.start": validation[0], "validation.end": validation[1]})
        metrics.update(_numbers({"trials": len(report.get("trials") or []),
                                 "als_alone.score": (report.get("als_alone") or {}).get("score"),
                                 **_flatten("popularity", report.get("popularity") or {})}))
        _log(client, parent, metrics, {k: v for k, v in params.items() if v is not None})
        for i, trial in enumerate(report.get("trials") or []):
            child = client.create_run(experiment_id, run_name=f"{trial.get('stage')}-{i}", tags={
                KIND_TAG: "tune-trial", "mlflow.parentRunId": parent}).info.run_id
            _log(client, child, *_trial(trial))
            client.set_terminated(child)
        if tuned is not None and tuned.exists():
            client.log_artifact(parent, str(tuned))
        client.set_terminated(parent)
        log.info("tuning tracked in MLflow: run %s", parent)
        return parent
    return None


def mark_published(target: Target, version: str, out: Path | None = None) -> str | None:
    """Tag the train run of `version` as published now and served (no other run stays
    tagged served), and log its report again (`out`/report.html: with the gate's verdict)."""
    if not target.enabled or target.empty:
        return None
    with _never_fails(f"publishing of {version}"):
        client, experiment_id = _client(target)
        runs = _runs(client, experiment_id, _train_tags(version))
        if not runs:
            log.warning("no MLflow run of model %s to tag as published (trained before "
                        "tracking was on, or tracked elsewhere)", version)
            return None
        run_id = runs[0].info.run_id
        for old in _runs(client, experiment_id, {SERVED_TAG: "true"}):
            if old.info.run_id != run_id:
                client.delete_tag(old.info.run_id, SERVED_TAG)
        client.set_tag(run_id, PUBLISHED_TAG,
                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        client.set_tag(run_id, SERVED_TAG, "true")
        if out is not None and (out / "report.html").exists():
            client.log_artifact(run_id, str(out / "report.html"))
        return run_id
    return None


if __name__ == "__main__":
    from core.config import load

    logging.basicConfig(level=logging.ERROR)  # the store alone on stdout
    target = Target.from_settings(load())
    print(target.uri, target.artifacts or "-")
