"""MLflow tracking (models/tracking.py): what a train run logs is what metrics.json holds; a
publish tags the run; tracking never fails the step it records. No Spark: the runs are
logged from hand-made metrics shaped like a real metrics.json into a SQLite store in tmp."""
import dataclasses
import json
import logging
import sys

import pytest

import pipeline
from core.config import Settings, load
from models import tracking
from tests.conftest import write_model

mlflow = pytest.importorskip("mlflow")

MODELS = ("hybrid", "als", "item_knn", "popularity")


def real_metrics(version="20240105-abc", seed=1):
    """A metrics.json as models/train.py finalize writes it; every figure distinct."""
    figure = iter(range(seed * 1000, seed * 1000 + 1000))
    models = {m: {mode: {k: next(figure) / 7919 for k in ("precision", "recall", "map", "ndcg",
                                                          "coverage")} | {"users": 40 + seed}
                  for mode in ("all", "new")} for m in MODELS}
    return {
        "version": version, "window": ["2024-01-01", "2024-01-05"],
        "params": {"als": {"rank": 32, "reg_param": 1.0, "alpha": 10.0, "max_iter": 10,
                           "strength": "count", "top_k": 50, "seed": 42, "blocks": 0},
                   "hybrid": {"w_repeat": 2.0, "w_als": 0.5, "rebuy": 1.0},
                   "fpgrowth": {"min_support": None, "min_confidence": 0.05},
                   "window": ["2024-01-01", "2024-01-05"], "holdout_days": 2,
                   "selection": {"metric": "map", "mode": "all"}},
        "published_model": "hybrid", "tuning": None,
        "trained_on": {"orders": 300, "lines": 912, "shoppers": 77, "goods": 50,
                       "history_shoppers": 80, "repeat_rate": 0.1234},
        "evaluation": {"k": 10, "cut": "2024-01-04", "test_users": 41, "models": models,
                       "selection": {"published": "hybrid", "rebuy": 0.5, "by": "map@10 (all)",
                                     "margin": 0.0, "interval": [-0.0025, 0.0091]}},
        "fpgrowth": {"min_support": 0.0025, "rules": 245, "baskets_mined": 300},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module: creating one costs a second of migrations."""
    root = tmp_path_factory.mktemp("tracking")
    return Settings().replace(warehouse_root=str(root / "warehouse"))


@pytest.fixture
def target(store, request):
    """A target in the shared store, with an experiment of the test's own."""
    return dataclasses.replace(tracking.Target.from_settings(store),
                               experiment=request.node.name)


def model_dir(tmp_path, metrics):
    out = tmp_path / "models" / metrics["version"]
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.html").write_text(f"<h1>{metrics['version']}</h1>")
    return out


def expected_metrics(metrics: dict) -> dict:
    """What a train run must hold, read off metrics.json: every holdout figure as
    `<model>.<mode>.<metric>`, every count of `trained_on` and of `fpgrowth`."""
    models = (metrics.get("evaluation") or {}).get("models") or {}
    out = {f"{model}.{mode}.{name}": value for model, modes in models.items()
           for mode, figures in modes.items() for name, value in figures.items()}
    out.update({f"trained_on.{k}": v for k, v in metrics["trained_on"].items()})
    out.update({f"fpgrowth.{k}": v for k, v in metrics["fpgrowth"].items() if v is not None})
    return out


def assert_run_holds(run, metrics: dict) -> None:
    """The run's metrics, but for the holdout's summary (`holdout.*`, `selection.*`), are
    exactly those of metrics.json: none missing, none added, the same values."""
    logged = {k: v for k, v in run.data.metrics.items()
              if not k.startswith(("holdout.", "selection."))}
    assert logged == expected_metrics(metrics)
    assert run.data.tags["shoprecs.version"] == metrics["version"]


def runs_of(target, version=None):
    client = mlflow.MlflowClient(target.uri)
    experiment = client.get_experiment_by_name(target.experiment)
    where = f"tags.`shoprecs.version` = '{version}'" if version else ""
    return client, client.search_runs([experiment.experiment_id], filter_string=where)


def test_a_train_run_holds_what_metrics_json_holds(target, tmp_path):
    metrics = real_metrics()
    out = model_dir(tmp_path, metrics)
    run_id = tracking.log_train(target, json.loads((out / "metrics.json").read_text()), out)

    client, runs = runs_of(target, "20240105-abc")
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert_run_holds(run, metrics)
    assert len([k for k in run.data.metrics if k.split(".")[0] in MODELS]) == 4 * 2 * 6
    assert run.data.metrics["hybrid.new.map"] == metrics["evaluation"]["models"]["hybrid"][
        "new"]["map"]
    assert run.data.metrics["trained_on.lines"] == 912
    assert run.data.metrics["trained_on.repeat_rate"] == 0.1234
    assert run.data.metrics["fpgrowth.rules"] == 245
    assert run.data.metrics["holdout.test_users"] == 41
    assert run.data.metrics["selection.interval_high"] == 0.0091
    params = run.data.params
    assert params["als.rank"] == "32" and params["als.strength"] == "count"
    assert params["hybrid.w_als"] == "0.5" and params["fpgrowth.min_support"] == "null"
    assert (params["window.start"], params["window.end"], params["window.cut"]) == (
        "2024-01-01", "2024-01-05", "2024-01-04")
    assert params["selection.metric"] == "map" and params["published_model"] == "hybrid"
    assert run.data.tags["shoprecs.version"] == "20240105-abc"
    assert run.data.tags["shoprecs.kind"] == "train"
    assert run.info.run_name == "20240105-abc"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["metrics.json",
                                                                      "report.html"]
    logged = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
    assert json.loads(open(logged).read()) == metrics
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == run_id


def test_logging_a_version_again_replaces_its_run(target, tmp_path):
    metrics = real_metrics()
    out = model_dir(tmp_path, metrics)
    first = tracking.log_train(target, metrics, out)
    again = tracking.log_train(target, metrics, out)
    _, runs = runs_of(target, metrics["version"])
    assert first != again and [r.info.run_id for r in runs] == [again]
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == again


def test_publish_tags_the_run_of_the_version_and_moves_served(target, tmp_path):
    v1, v2 = real_metrics("v1", 1), real_metrics("v2", 2)
    out1, out2 = model_dir(tmp_path, v1), model_dir(tmp_path, v2)
    run1, run2 = tracking.log_train(target, v1, out1), tracking.log_train(target, v2, out2)
    assert tracking.mark_published(target, "v1", out1) == run1
    client, _ = runs_of(target)
    tags = client.get_run(run1).data.tags
    assert tags["shoprecs.served"] == "true" and tags["shoprecs.published"].startswith("20")
    assert "shoprecs.published" not in client.get_run(run2).data.tags

    assert tracking.mark_published(target, "v2", out2) == run2
    assert client.get_run(run2).data.tags["shoprecs.served"] == "true"
    assert "shoprecs.served" not in client.get_run(run1).data.tags
    assert "shoprecs.published" in client.get_run(run1).data.tags  # it was, once


def test_pipeline_publish_tags_the_trained_run(settings):
    out = write_model(settings.root, "v1")
    target = tracking.Target.from_settings(settings)
    assert target.uri == f"sqlite:///{settings.root.resolve() / 'mlflow.db'}"
    run_id = tracking.log_train(target, json.loads((out / "metrics.json").read_text()), out)
    pipeline.publish(settings, "v1", skip_gate=True)
    client = mlflow.MlflowClient(target.uri)
    assert client.get_run(run_id).data.tags["shoprecs.served"] == "true"
    assert (settings.root / "mlartifacts").is_dir()  # the artifacts in the warehouse too


def test_a_tune_run_has_the_chosen_parameters_and_each_trial_nested(target, tmp_path):
    trial = {"stage": "als", "als": {"rank": 8}, "hybrid": {"w_als": 1.0}, "score": 1.5,
             "fit_seconds": 2.0, "metrics": {"all": {"map": 0.2}, "new": {"map": 0.1}}}
    report = {"validation": ["2024-01-03", "2024-01-04"], "als": {"rank": 16},
              "hybrid": {"w_als": 0.5}, "score": 1.75, "metrics": {"all": {"map": 0.3}},
              "popularity": {"all": {"map": 0.12}}, "als_alone": {**trial},
              "trials": [trial, {**trial, "stage": "hybrid", "score": 1.75}]}
    tuned = tmp_path / "TUNED.json"
    tuned.write_text(json.dumps(report))
    parent = tracking.log_tune(target, report, ("2024-01-01", "2024-01-05"), tuned)
    client, runs = runs_of(target)
    chosen = client.get_run(parent).data
    assert chosen.params["als.rank"] == "16" and chosen.params["validation.end"] == "2024-01-04"
    assert chosen.metrics["score"] == 1.75 and chosen.metrics["all.map"] == 0.3
    assert chosen.metrics["popularity.all.map"] == 0.12 and chosen.metrics["trials"] == 2
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert sorted(r.data.metrics["score"] for r in children) == [1.5, 1.75]
    assert [a.path for a in client.list_artifacts(parent)] == ["TUNED.json"]


def failing_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    from shoprecs.demo import free_port

    (tmp_path / "a-file").write_text("")
    artifacts = (tmp_path / "artifacts").as_uri()  # never MLflow's default, ./mlruns
    yield tracking.Target(f"sqlite:///{tmp_path}/a-file/mlflow.db", "x", True, artifacts)
    yield tracking.Target("nosuchstore://somewhere", "x", True, artifacts)
    yield tracking.Target(f"http://127.0.0.1:{free_port()}", "x")  # nobody listens


def every_call(target, tmp_path):
    out = model_dir(tmp_path, real_metrics())
    assert tracking.log_train(target, real_metrics(), out) is None
    assert tracking.log_tune(target, {"trials": []}, ("2024-01-01", "2024-01-05")) is None
    assert tracking.mark_published(target, "20240105-abc", out) is None


def test_an_unreachable_store_is_one_warning_per_step(tmp_path, monkeypatch, caplog):
    for i, target in enumerate(failing_targets(tmp_path, monkeypatch)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="models.tracking"):
            every_call(target, tmp_path / str(i))
        warnings = [r for r in caplog.records if r.name == "models.tracking"]
        # log_train and log_tune; the SQLite store's file is missing, so publish knows
        # there is nothing to tag without asking it.
        assert len(warnings) == (2 if target.uri.startswith("sqlite") else 3), warnings
        assert all("not tracked" in r.getMessage() for r in warnings)


def test_without_mlflow_installed_the_step_goes_on(target, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with caplog.at_level(logging.WARNING, logger="models.tracking"):
        every_call(target, tmp_path)
    assert caplog.records and all("mlflow is not installed" in r.getMessage()
                                  for r in caplog.records)


def test_disabled_tracking_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    settings = load(env={"SHOPRECS_WAREHOUSE_ROOT": str(tmp_path / "w"),
                         "SHOPRECS_TRACKING_ENABLED": "false",
                         "SHOPRECS_PRIVACY_HMAC_KEY": "k"})
    target = tracking.Target.from_settings(settings)
    assert target.enabled is False
    every_call(target, tmp_path)
    assert not (tmp_path / "w").exists()


def test_a_tracking_server_chooses_where_artifacts_go():
    settings = Settings().replace(tracking_uri="http://mlflow.internal:5000",
                                   tracking_experiment="nightly")
    target = tracking.Target.from_settings(settings)
    assert (target.uri, target.experiment, target.artifacts) == (
        "http://mlflow.internal:5000", "nightly", None)
    assert "mlflow.internal" not in repr(target) and "tracking_uri" not in repr(settings)
