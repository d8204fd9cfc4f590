"""The default night on shops unlike the demo's: it publishes, or the gate says why not.

Each profile of simulation.generator.PROFILES, shrunk to test size, goes through the bus
simulator, extract, clean, train and publish with the default settings. Whatever the
shop, the night must end in a published model or in the quality gate's verdict naming
the metric and both figures; never in a stack trace.
"""
import json
import re
from collections import defaultdict

import pyarrow.parquet as pq
import pytest

from core.phones import normalize
from engine import RecommendationEngine, current_version
from shoprecs.demo import free_port, run_night
from simulation.generator import profile

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# Small enough for the suite (full size: make bench-profiles); each keeps what makes its
# shop unlike the others. A night's cost grows with its days (a landed partition each).
SHOPS = {
    "tiny": profile("tiny", 0.5, days=30),
    "no_repeat": profile("no_repeat", 0.5, days=150),  # history beyond the 90-day window
    "long_tail": profile("long_tail", 0.1, days=30),
    "seasonal": profile("seasonal", 0.2, days=60),  # goods that sell a few weeks each
    "guests": profile("guests", 0.2),
}
VERDICT = re.compile(r"model \S+ not published, \S+ stays served: (MAP|NDCG|PRECISION|RECALL)"
                     r"@10 \((all|new)\) \d\.\d{4} (does not beat the popularity baseline|is "
                     r"more than \d+% below the served model \S+'s) \d\.\d{4}")


@pytest.fixture(params=list(SHOPS))
def night(request, spark, settings):
    shop = SHOPS[request.param]
    s = settings.replace(bus_url=f"http://127.0.0.1:{free_port()}",
                            bus_per_page=500)
    spark.catalog.clearCache()
    return request.param, s, run_night(shop, s, spark=spark)


def test_the_default_night_publishes_or_the_gate_says_why(night):
    name, settings, result = night
    root = settings.root
    metrics = json.loads((root / "models" / result.version / "metrics.json").read_text())
    if result.verdict is None:
        assert current_version(root) == result.version
    else:
        assert VERDICT.search(result.verdict), result.verdict
        assert current_version(root) is None
    recs = pq.read_table(root / "models" / result.version / "results" / "user_recs").to_pandas()
    assert not recs.empty
    chosen = metrics["evaluation"]["selection"]
    assert metrics["published_model"] == chosen["published"] in chosen["candidates"]
    assert_tracked(settings, result.version, metrics)
    if name == "no_repeat":
        # Nobody re-buys: no goods a shopper owns may take a place in their list, also what
        # they bought before the 90-day window (the shop has 150 days).
        assert metrics["trained_on"]["repeat_rate"] == 0.0
        assert chosen["rebuy"] == 0.0, chosen
        assert not recs["bought"].any()
        assert result.verdict is None
        assert_never_offered_again(result.orders, settings)
    else:
        assert metrics["trained_on"]["repeat_rate"] > 0.0


def assert_tracked(settings, version, metrics):
    """The night's MLflow run (models/tracking.py) holds every holdout figure of its
    metrics.json, and its cut."""
    from models import tracking
    from tests.models.test_tracking import assert_run_holds, runs_of

    assert {"als", "popularity"} <= set(metrics["evaluation"]["models"])
    _, runs = runs_of(tracking.Target.from_settings(settings), version)
    assert len(runs) == 1
    assert_run_holds(runs[0], metrics)
    assert runs[0].data.params["window.cut"] == metrics["evaluation"]["cut"]


def assert_never_offered_again(orders, settings):
    """Through the served engine: no shopper is recommended a goods they ever bought."""
    engine = RecommendationEngine.from_warehouse(settings.root,
                                                 hmac_key=settings.privacy.hmac_key)
    owned = defaultdict(set)
    for order in orders:
        if order["clientTel"]:
            owned[normalize(order["clientTel"])].update(x["goodsId"] for x in order["basket"])
    personal = 0
    for phone, goods in owned.items():
        for exclude in (False, True):
            recs, sources = engine.recommend(phone, 10, exclude_bought=exclude)
            personal += "personalized" in sources
            assert not {int(r.goods_id) for r in recs} & goods
    assert personal > 0
