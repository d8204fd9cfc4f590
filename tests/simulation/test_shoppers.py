"""Simulated shoppers who buy by their tastes make an arm earn its uplift by what it shows:
a storefront whose `model` arm shows random lists earns nothing over popular goods, one that
shows each shopper goods they like earns it. The storefront and the bus here are one stub
(the real service's A/B tests: tests/test_end_to_end.py)."""
from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from simulation.shoppers import Behaviour, visit_all

GOODS = list(range(200))
SHOPPERS = [f"7900{n:07d}" for n in range(2000)]
rng = np.random.default_rng(5)
TASTES = {p: frozenset(int(g) for g in rng.choice(GOODS, 25, replace=False)) for p in SHOPPERS}
POPULAR = GOODS[:10]


def storefront(model_shows):
    """Arms by the phone's hash, half each; `model_shows(phone)` is the model arm's list."""
    app = Flask(__name__)

    @app.get("/users/<phone>/recommendations")
    def recommendations(phone):
        arm = "model" if zlib.crc32(phone.encode()) % 2 else "popular"
        shown = model_shows(phone) if arm == "model" else POPULAR
        answer = jsonify([{"goodsId": g} for g in shown])
        answer.headers.update({"X-Experiment-Arm": arm, "X-Recommendation-Id": "r"})
        return answer

    @app.post("/orders")
    def orders():
        return jsonify(request.get_json())

    return app


@pytest.fixture
def shop():
    servers = []

    def start(model_shows) -> str:
        server = make_server("127.0.0.1", 0, storefront(model_shows), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"
    yield start
    for server in servers:
        server.shutdown()


def rates(url: str) -> dict[str, float]:
    done = visit_all(url, url, ("u", "p"), SHOPPERS, {}, Behaviour(
        click_rate=0.0, buy_rate=0.02, tastes=TASTES, taste_rate=0.10, seed=3))
    assert not done.failed
    return {arm: done.buyers[arm] / done.visits[arm] for arm in done.visits}


def test_random_lists_earn_nothing_over_popular_goods(shop):
    url = shop(lambda phone: [int(g) for g in np.random.default_rng(  # the same for a phone
        zlib.crc32(phone.encode())).choice(GOODS, 10, replace=False)])
    found = rates(url)
    # both arms show ~1/8 liked goods: 2% + 10% x 1/8 = 3.25%, within noise of each other
    assert abs(found["model"] - found["popular"]) < 0.02, found


def test_lists_of_what_shoppers_like_earn_the_uplift(shop):
    url = shop(lambda phone: sorted(TASTES[phone])[:10])
    found = rates(url)
    # 2% + 10% x 1 = 12% against about 3.25%
    assert found["model"] - found["popular"] > 0.06, found
