import json

import pytest

import pipeline
from engine import current_version
from models.gate import GatePolicy, QualityGateError, check
from tests.conftest import write_model


def metrics(als_map, popularity_map, version="new"):
    models = {"als": {"all": {"map": als_map}}, "popularity": {"all": {"map": popularity_map}}}
    return {"version": version, "evaluation": {"k": 10, "models": models}}


def test_gate_requires_beating_popularity_and_the_served_model():
    assert check(metrics(0.05, 0.02), metrics(0.05, 0.02, "old")) == []
    assert "popularity" in check(metrics(0.02, 0.02), None)[0]
    assert "below the served model old" in check(metrics(0.04, 0.01), metrics(0.05, 0.01, "old"))[0]
    assert check(metrics(0.046, 0.01), metrics(0.05, 0.01, "old")) == []  # within 10%
    assert check(metrics(0.04, 0.01), metrics(0.05, 0.01), GatePolicy(max_drop=0.25)) == []
    assert check({"evaluation": {"skipped": "first night"}}, None) == []


def test_a_bad_model_is_blocked_and_the_served_version_stays(published):
    root = published.root
    good = root / "serving" / "v1" / "manifest.json"
    manifest = json.loads(good.read_text())
    manifest["metrics"] = metrics(0.05, 0.02, "v1")
    good.write_text(json.dumps(manifest))
    out = write_model(root, "v2")
    (out / "metrics.json").write_text(json.dumps(metrics(0.01, 0.02, "v2")))
    with pytest.raises(QualityGateError, match="model v2 not published, v1 stays served"):
        pipeline.publish(published, "v2")
    assert current_version(root) == "v1"
    pipeline.publish(published, "v2", skip_gate=True)  # the operator's override
    assert current_version(root) == "v2"


def test_gate_reads_the_published_model_not_als():
    candidate = metrics(0.01, 0.02)
    candidate["published_model"] = "hybrid"
    candidate["evaluation"]["models"]["hybrid"] = {"all": {"map": 0.05}}
    assert check(candidate, None) == []  # hybrid 0.05 beats popularity 0.02; ALS does not
    candidate["evaluation"]["models"]["hybrid"] = {"all": {"map": 0.015}}
    assert "0.0150 does not beat the popularity baseline" in check(candidate, None)[0]
