"""From the bus simulator to an HTTP answer from CherryPy, on generated data; then the loop
closed: the API on CherryPy (two worker processes) running an A/A/B test, simulated
shoppers who see their arm's recommendations, click and buy, with an uplift planted in arm
`b` only, and the next night's attribution. It must find exactly what the shoppers did
(ground truth), the uplift of `b` with its interval above zero, and no difference between
the two identical arms `a` and `aa` (the A/A test inside the same run)."""
import dataclasses
import datetime as dt
from collections import Counter
from urllib.parse import quote

import pytest
import requests

import pipeline
from core.config import Settings
from core.phones import normalize
from service import create_app
from shoprecs.demo import free_port, start_service, start_simulator
from simulation.generator import GeneratorParams, format_phone, generate
from simulation.shoppers import Behaviour, visit_all
from tests.conftest import TEST_KEY

pytestmark = [pytest.mark.spark, pytest.mark.slow]
ARMS = "a:model:34, aa:model:33, b:model:33"
PLANTED = 0.06  # arm b's extra chance to buy


@dataclasses.dataclass
class Night:
    settings: Settings
    orders: list
    goods: list
    truth: object
    version: str


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    """One generated shop's night, shared by the tests below; its bus keeps running."""
    params = GeneratorParams(start=dt.date(2024, 1, 1), days=5, orders=3000, shoppers=300,
                             goods=200, clusters=4, items_per_cluster=25, bundles=5,
                             bundle_rate=0.4, seed=7)
    orders, goods, truth = generate(params)
    s = Settings().replace(warehouse_root=str(tmp_path_factory.mktemp("night") / "warehouse"),
        privacy_hmac_key=TEST_KEY, bus_url=f"http://127.0.0.1:{free_port()}", bus_per_page=200,
        bus_retries=1, service_port=free_port(), train_window_days=5)
    bus = start_simulator(orders, goods, s)
    spark.catalog.clearCache()  # what earlier tests left in the shared session
    try:
        version = pipeline.run(s, dt.date(2024, 1, 1), dt.date(2024, 1, 5), spark)["publish"]
        # The night releases every cache it filled: Airflow's workers and the demo keep the
        # session.
        assert spark._jsparkSession.sharedState().cacheManager().isEmpty()
        yield Night(s, orders, goods, truth, version)
    finally:
        bus.stop()


def test_simulator_to_http_answer(spark, night, tmp_path):
    s, orders, goods, truth, version = (night.settings, night.orders, night.goods, night.truth,
                                        night.version)
    # Same data, same parameters: the second night finds the version already trained.
    assert pipeline.run(s, dt.date(2024, 1, 1), dt.date(2024, 1, 5), spark)["train"] == version
    assert_tracked(s, version)

    service = start_service(s, tmp_path / "service.log")
    try:
        base = f"http://127.0.0.1:{s.service.port}"
        counts = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"])
        in_cluster = []
        for shopper, _ in counts.most_common(20):
            phone = format_phone(shopper, 0)
            resp = requests.get(f"{base}/users/{quote(phone)}/recommendations?limit=10")
            assert resp.status_code == 200
            assert resp.headers["X-Recommendation-Source"] == "personalized"
            assert resp.headers["X-Model-Version"] == version
            taste = set(truth.cluster_items[truth.cluster_of[shopper]])
            in_cluster.append(sum(i["goodsId"] in taste for i in resp.json()))
        # Random picks would hit a 25-item cluster in 200 goods ~1.3 times in 10.
        assert sum(in_cluster) / len(in_cluster) >= 7, in_cluster

        unknown = requests.get(f"{base}/users/{quote('+7 (900) 123-4567')}/recommendations")
        assert unknown.headers["X-Recommendation-Source"] == "popular"
        assert len(unknown.json()) == 10

        a, b = truth.bundles[0][:2]
        rules = requests.get(f"{base}/products/{a}/associations?limit=20").json()
        assert [b] in [r["consequent"] for r in rules]
        assert requests.get(f"{base}/models").json()["version"] == version

        # A product nobody bought has no ALS factors: its neighbours come from its name.
        bought = {line["goodsId"] for o in orders for line in o["basket"]}
        names = {g["id"]: g["name"] for g in goods}
        fresh = min(set(names) - bought)
        near = requests.get(f"{base}/products/{fresh}/similar?limit=5").json()
        words = set(names[fresh].lower().split()[:-1])  # "Blue Mug 123": its adjective, noun
        assert near and all(words & set(n["name"].lower().split()) for n in near), near
    finally:
        service.terminate()
        assert service.wait(timeout=30) == 0  # SIGTERM: graceful shutdown
    log = (tmp_path / "service.log").read_text()
    assert "GET /users/" in log  # TransLogger access lines...
    assert not any(shopper[1:8] in log for shopper in counts)  # ...without phone numbers


def test_attribution_finds_a_planted_uplift_and_no_aa_difference(spark, night, tmp_path,
                                                                 monkeypatch):
    settings = night.settings.replace(service_port=free_port(),
                                   experiment_name="loop", experiment_arms=ARMS)
    # the shop's shoppers, and many more the model has never seen
    phones = sorted({normalize(o["clientTel"]) for o in night.orders if o["clientTel"]})
    phones += [f"7955{n:07d}" for n in range(2400 - len(phones))]
    prices = {g["id"]: g["price"] for g in night.goods}
    monkeypatch.setenv("SHOPRECS_SERVICE_WORKERS", "2")
    today = dt.datetime.now(dt.UTC).date()
    service = start_service(settings, tmp_path / "service.log")
    try:
        base = f"http://127.0.0.1:{settings.service.port}"
        truth = visit_all(base, settings.bus.url, (settings.bus.user, settings.bus.password),
                          phones, prices, Behaviour(click_rate=0.3, buy_rate=0.1,
                                                    uplift={"b": PLANTED}, seed=7))
        assert truth.failed == 0 and set(truth.visits) == {"a", "aa", "b"}
        service.terminate()  # SIGTERM: the workers write what they hold and stop
        assert service.wait(timeout=30) == 0
    finally:
        if service.poll() is None:
            service.kill()
    end = dt.datetime.now(dt.UTC).date()  # the next night: what the shoppers did today
    pipeline.extract(settings, today, end)
    pipeline.clean(settings, today, end, spark)
    report = pipeline.attribute(settings, end, spark)

    (experiment,) = report["experiments"]
    arms = {a["arm"]: a for a in experiment["arms"]}
    assert experiment["control"] == "a"
    for name, arm in arms.items():  # exactly what the shoppers did
        assert arm["shoppers"] == truth.visits[name]
        assert arm["converted"] == truth.buyers[name]
        assert arm["revenue"] == pytest.approx(truth.revenue[name])
        (route,) = arm["routes"]
        assert (route["route"], route["impressions"]) == ("recommendations", truth.visits[name])
        assert route["clicked"] == truth.clicks[name]
    versus = {c["arm"]: c for c in experiment["comparisons"]}
    uplift, same = versus["b"]["conversion_difference"], versus["aa"]["conversion_difference"]
    # a modest planted uplift (10 % -> 16 % of 800 shoppers an arm) is found, its interval
    # holding the truth; the statistics' power and false positives over many experiments:
    # make bench-attribution (bench/RESULTS.md)
    assert versus["b"]["significant"] and 0 < uplift["low"] < PLANTED < uplift["high"]
    assert not versus["aa"]["significant"] and same["low"] < 0 < same["high"]
    assert experiment["confidence"] == pytest.approx(0.975)  # two comparisons: Bonferroni

    # the service shows the report to merchandisers
    app = create_app({"TESTING": True, "SETTINGS": settings})
    shown = app.test_client().get("/experiments").get_json()
    assert shown["experiment"]["name"] == "loop"
    assert shown["reports"][-1]["experiments"][0]["comparisons"] == experiment["comparisons"]


def assert_tracked(settings, version):
    """The night's MLflow run (models/tracking.py, in the test's warehouse): one per version
    however often the night runs, holding exactly the metrics metrics.json holds (this short
    window has no holdout: no holdout figure either), tagged as the version served."""
    import json

    from mlflow import MlflowClient

    from tests.models.test_tracking import assert_run_holds

    assert not settings.tracking.uri  # the default store: <warehouse>/mlflow.db
    client = MlflowClient(f"sqlite:///{settings.root.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("shoprecs").experiment_id
    runs = client.search_runs([experiment], f"tags.`shoprecs.version` = '{version}'")
    assert len(runs) == 1
    metrics = json.loads((settings.root / "models" / version / "metrics.json").read_text())
    assert_run_holds(runs[0], metrics)
    assert runs[0].data.tags["shoprecs.served"] == "true"
    run_file = settings.root / "models" / version / "mlflow.json"
    assert json.loads(run_file.read_text())["run_id"] == runs[0].info.run_id
