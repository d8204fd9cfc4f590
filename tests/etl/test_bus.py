import datetime as dt
import json

import pytest

from etl.bus import BusClient, BusError, extract
from simulation.simulator import create_app
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
    manifests = extract(BusClient.from_settings(s.bus), DAY, DAY + dt.timedelta(1), s.root)
    assert [(m["orders"], m["pages"]) for m in manifests] == [(23, 4), (5, 1)]  # per page 7
    landed = s.root / "landing" / "orders" / "dt=2024-03-01" / "orders.jsonl"
    ids = [json.loads(line)["id"] for line in landed.read_text().splitlines()]
    assert ids == list(range(23))
    manifest = json.loads((landed.parent / "_manifest.json").read_text())
    assert manifest["orders"] == 23 and len(manifest["sha256"]) == 64
    goods = s.root / "landing" / "goods" / "dt=2024-03-02" / "goods.jsonl"
    assert json.loads(goods.read_text()) == {"id": 1, "name": "M"}


def test_wrong_credentials_name_the_setting_to_fix(bus, settings):

    s = bus(orders_for(DAY, 1), []).replace(bus_password="nope")
    with pytest.raises(BusError, match=r"refused the credentials \(HTTP 401 on GET /orders\): "
                                       "check bus.user"):
        extract(BusClient.from_settings(s.bus), DAY, DAY, s.root)


class FakeBus:
    """Stands in for BusClient in _fetch_pages: pages of one order each, calls recorded."""

    def __init__(self, pages: int, fail_on: int | None = None, workers: int = 4,
                 slow_on: int | None = None):
        import threading

        self.pages, self.fail_on, self.workers = pages, fail_on, workers
        self.slow_on = slow_on  # a page that takes long: the caller waits on it
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    profile = __import__("core.bus_profile").bus_profile.BusProfile()

    def orders_page(self, page, **params):
        return self.get_page("/orders", "orders", page, **params)

    def page_count(self, body):
        return body["pageCount"]

    def orders(self, body):
        return body["orders"]

    def get_page(self, path, key, page, **params):
        import time

        with self._lock:
            self.calls.append((params["from"], page))
        if page == self.fail_on:
            raise BusError(f"page {page} failed")
        time.sleep(0.5 if page == self.slow_on else 0.002)
        return {key: [{"id": f"{params['from']}/{page}", "date": params["from"], "basket": []}],
                "pageCount": self.pages}


def fetch(client, root, day_list):
    from etl._progress import Progress
    from etl.bus import _Day, _fetch_pages

    todo = [_Day(root, d, 1) for d in day_list]
    with Progress("test", total=len(todo)) as progress:
        _fetch_pages(client, todo, progress)
    return todo


def test_every_page_is_fetched_once_and_a_resumed_run_fetches_only_what_it_lacks(tmp_path):
    day_list = [DAY, DAY + dt.timedelta(1), DAY + dt.timedelta(2)]
    client = FakeBus(pages=40)
    todo = fetch(client, tmp_path, day_list)
    assert sorted(client.calls) == sorted((d.isoformat(), p) for d in day_list
                                          for p in range(1, 41))
    lost = [todo[1].part(p) for p in (7, 8, 40)]
    for path in lost:
        path.unlink()
    again = FakeBus(pages=40)
    fetch(again, tmp_path, day_list)
    assert sorted(again.calls) == sorted([(d.isoformat(), 1) for d in day_list]
                                         + [(todo[1].day.isoformat(), p) for p in (7, 8, 40)])
    assert all(path.exists() for path in lost)


def test_a_failed_page_stops_the_workers_taking_new_pages(tmp_path):
    # page 2 is slow: the caller is still waiting on it when page 20 fails, so only the
    # failing worker itself can stop the others
    client = FakeBus(pages=500, fail_on=20, workers=4, slow_on=2)
    with pytest.raises(BusError, match="page 20 failed"):
        fetch(client, tmp_path, [DAY])
    assert len(client.calls) < 100  # not all 500: the others stopped after the failure
    assert len(set(client.calls)) == len(client.calls)  # none fetched twice
