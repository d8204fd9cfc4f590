"""`make demo` on a small shop, in this process on the suite's Spark: the night, the
model's own answers first (no experiment while it shows them), then an A/B test whose
uplift the shoppers' tastes decide, and the next night's attribution of it."""
import re

import pytest

from shoprecs.demo import run_demo
from simulation.generator import profile

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_the_demo_shows_the_models_answers_then_an_earned_ab_test(spark, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("SHOPRECS_PRIVACY_HMAC_KEY", "demo-test-key")
    timings = run_demo(str(tmp_path), profile("default", 0.2, days=20))
    out = capsys.readouterr().out
    showcase, _, ab = out.partition("== A/B test")
    assert ab, out
    sources = re.findall(r"source=(\S+)", showcase)
    assert sources[0] == "personalized"  # the best customer, served by the model
    assert "context" in sources  # the stranger with recent=
    assert "X-Experiment-Arm" not in showcase and "no uplift is planted" in ab
    difference = re.search(r"model - popular: ([+-]\d+\.\d+)%", ab)
    assert difference, ab  # the next night's attribution of the A/B test, with its interval
    assert {"service start", "shoppers", "next night"} <= set(timings)
