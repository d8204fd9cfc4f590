import datetime as dt
import json

import pytest

from etl.bus import BusClient, BusError, extract
from etl.simulator import create_app
from tests.conftest import order

DAY = dt.date(2024, 3, 1)


def orders_for(day: dt.date, n: int) -> list[dict]:
    return [order(i, f"{day}T10:{i % 60:02d}:00", "79160000000", (1, 1)) for i in range(n)]


@pytest.fixture
def sim():
    orders = orders_for(DAY, 23) + orders_for(DAY + dt.timedelta(1), 5)
    return create_app(orders, [{"id": 1, "name": "Mug"}], user="u", password="p").test_client()


def test_simulator_requires_basic_auth(sim):
    assert sim.get("/orders").status_code == 401
    assert sim.get("/orders", auth=("u", "wrong")).status_code == 401
    assert sim.get("/orders", auth=("u", "p")).status_code == 200


def test_simulator_paginates_from_one_to_page_count(sim):
    body = sim.get("/orders?page=3&per-page=10&from=2024-03-01&to=2024-03-01",
                   auth=("u", "p")).get_json()
    assert body["pageCount"] == 3 and body["page"] == 3
    assert len(body["orders"]) == 3  # 23 orders: 10 + 10 + 3
    assert "basket" not in body["orders"][0]
    expanded = sim.get("/orders?per-page=10&expand=basket", auth=("u", "p")).get_json()
    assert expanded["orders"][0]["basket"] == [{"goodsId": 1, "quantity": 1, "price": 1.0}]
    assert expanded["pageCount"] == 3  # 28 orders over both days


def test_simulator_rejects_bad_paging(sim):
    assert sim.get("/orders?page=0", auth=("u", "p")).status_code == 400
    assert sim.get("/orders?per-page=abc", auth=("u", "p")).status_code == 400


def test_extract_lands_every_page_including_the_last(bus, settings):
    s = bus(orders_for(DAY, 23) + orders_for(DAY + dt.timedelta(1), 5), [{"id": 1, "name": "M"}])
    manifests = extract(BusClient.from_settings(s), DAY, DAY + dt.timedelta(1), s.warehouse)
    assert [(m["orders"], m["pages"]) for m in manifests] == [(23, 4), (5, 1)]  # per page 7
    landed = s.warehouse / "landing" / "orders" / "dt=2024-03-01" / "orders.jsonl"
    ids = [json.loads(line)["id"] for line in landed.read_text().splitlines()]
    assert ids == list(range(23))
    manifest = json.loads((landed.parent / "_manifest.json").read_text())
    assert manifest["orders"] == 23 and len(manifest["sha256"]) == 64
    goods = s.warehouse / "landing" / "goods" / "dt=2024-03-02" / "goods.jsonl"
    assert json.loads(goods.read_text()) == {"id": 1, "name": "M"}


def test_wrong_credentials_name_the_setting_to_fix(bus, settings):
    import dataclasses

    s = dataclasses.replace(bus(orders_for(DAY, 1), []), bus_password="nope")
    with pytest.raises(BusError, match="401 unauthorized; check bus.user"):
        extract(BusClient.from_settings(s), DAY, DAY, s.warehouse)
