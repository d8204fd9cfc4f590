"""From the bus simulator to an HTTP answer from CherryPy, on generated data."""
import dataclasses
import datetime as dt
from collections import Counter
from urllib.parse import quote

import pytest
import requests

from core.phones import normalize
from etl.generator import GeneratorParams, format_phone, generate
from shoprecs import pipeline
from shoprecs.demo import free_port, start_service

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_simulator_to_http_answer(spark, settings, bus, tmp_path):
    params = GeneratorParams(start=dt.date(2024, 1, 1), days=5, orders=3000, shoppers=300,
                             goods=200, clusters=4, items_per_cluster=25, bundles=5,
                             bundle_rate=0.4, seed=7)
    orders, goods, truth = generate(params)
    s = dataclasses.replace(bus(orders, goods), bus_per_page=200, service_port=free_port(),
                            train_window_days=5)
    spark.catalog.clearCache()  # what earlier tests left in the shared session
    version = pipeline.run_all(s, dt.date(2024, 1, 1), dt.date(2024, 1, 5), spark=spark)
    # The night releases every cache it filled: Airflow's workers and the demo keep the
    # session.
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()
    # Same data, same parameters: the second night finds the version already trained.
    assert pipeline.run_all(s, dt.date(2024, 1, 1), dt.date(2024, 1, 5), spark=spark) == version

    service = start_service(s, tmp_path / "service.log")
    try:
        base = f"http://127.0.0.1:{s.service_port}"
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
