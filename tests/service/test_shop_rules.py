"""Shop rules through the API: filters on every storefront route, the session's `recent`
goods, the blacklist's admin API, and over HTTP through CherryPy with two worker processes
a catalog refresh and a blacklist change reaching every worker without a retrain and
without a failed request.

The model (tests/conftest.write_model): the shopper's list 101 (bought), 102; 100's
neighbours 101, 102 and rules 100 -> 101, 100 -> 102; popular 100, ABC1.
"""
import dataclasses
import threading
import time
from urllib.parse import quote, urlencode

import pytest
import requests

from engine.shoprules import publish_catalog
from service import create_app
from shoprecs.demo import free_port, start_service
from tests.conftest import SHOPPER

ADMIN = "admin-key"
CATALOG = [{"id": 100, "name": "Mug", "category": "Kitchen"},
           {"id": 101, "name": "Saucer", "category": "Kitchen"},
           {"id": 102, "name": "Spoon", "category": "Cutlery"},
           {"id": "ABC1", "name": "Tea", "category": "Food"}]
STOREFRONT = [  # every storefront route, as (method, path, JSON body), each able to show 101
    ("GET", f"/users/{SHOPPER}/recommendations?limit=3", None),
    ("GET", "/products/100/associations", None),
    ("GET", "/products/100/similar", None),
    ("POST", "/recommendations/basket", {"items": [100]}),
]


def shown(method, resp) -> set[str]:
    """The goods ids an answer shows."""
    body = resp.json() if hasattr(resp, "json") and callable(resp.json) else resp.get_json()
    out = set()
    for item in body:
        out |= {str(g) for g in item.get("consequent", [item.get("goodsId")])}
    return out


@pytest.fixture
def client(published):
    publish_catalog(published.warehouse, CATALOG)
    settings = dataclasses.replace(published, admin_api_keys=ADMIN, service_rules_interval=0)
    return create_app({"TESTING": True, "SETTINGS": settings}).test_client()


def call(client, method, path, body=None, **params):
    if method == "GET":
        return client.get(path + ("&" if "?" in path else "?") + urlencode(params))
    return client.post(path, json={**body, **params})


def test_category_and_exclude_on_every_route(client):
    for method, path, body in STOREFRONT:
        plain = call(client, method, path, body)
        assert "101" in shown(method, plain), path
        if method == "GET":
            kitchen = call(client, method, path, category="Kitchen")
            cutlery = call(client, method, path, category="Cutlery,Food")
            without = call(client, method, path, exclude="101")
        else:
            kitchen = call(client, method, path, body, category=["Kitchen"])
            cutlery = call(client, method, path, body, category=["Cutlery", "Food"])
            without = call(client, method, path, body, exclude=[101])
        assert shown(method, kitchen) <= {"100", "101"}, path
        assert shown(method, cutlery) and shown(method, cutlery) <= {"102", "ABC1"}, path
        assert "101" not in shown(method, without), path


def test_a_thinned_list_is_filled_with_popular_goods_and_says_so(client):
    resp = client.get(f"/users/{SHOPPER}/recommendations?limit=3&exclude=101")
    assert [i["goodsId"] for i in resp.get_json()] == [102, 100, "ABC1"]
    assert resp.headers["X-Recommendation-Source"] == "personalized,popular"


def test_recent_goods_make_a_strangers_list_and_join_a_shoppers(client):
    stranger = quote("+7 (999) 000-0000")
    plain = client.get(f"/users/{stranger}/recommendations?limit=2")
    assert plain.headers["X-Recommendation-Source"] == "popular"
    assert [i["goodsId"] for i in plain.get_json()] == [100, "ABC1"]
    looked = client.get(f"/users/{stranger}/recommendations?limit=2&recent=100")
    assert looked.headers["X-Recommendation-Source"] == "context"
    assert [i["goodsId"] for i in looked.get_json()] == [101, 102]  # 100's, never 100
    mine = client.get(f"/users/{SHOPPER}/recommendations?limit=2&recent=102,100")
    # 101 is in the shopper's list and 100's context; 102 and 100 were just seen
    assert mine.headers["X-Recommendation-Source"] == "personalized,context,popular"
    assert [i["goodsId"] for i in mine.get_json()] == [101, "ABC1"]


@pytest.mark.parametrize("query,code", [
    ("category=", "invalid_category"), ("category=" + ",".join(map(str, range(101))),
                                        "invalid_category"),
    ("exclude=" + ",".join(map(str, range(101))), "invalid_exclude"),
    ("recent=" + ",".join(map(str, range(21))), "invalid_recent"),
    ("recent=" + "x" * 2001, "invalid_recent")])
def test_bad_filters_get_the_json_400(client, query, code):
    resp = client.get(f"/users/{SHOPPER}/recommendations?{query}")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == code
    resp = client.post("/recommendations/basket", json={"items": [100], "category": []})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_category"


def test_the_blacklist_admin_api(client):
    key = {"X-API-Key": ADMIN}
    assert client.get("/admin/blacklist").status_code == 401
    assert client.put("/admin/blacklist/101", json={"reason": "x"},
                      headers={"X-API-Key": "nope"}).status_code == 401
    resp = client.put("/admin/blacklist/101", json={"reason": ""}, headers=key)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_reason"
    resp = client.put("/admin/blacklist/101", json={"reason": "recalled by the maker"},
                      headers=key)
    assert resp.status_code == 200 and resp.get_json()["name"] == "Saucer"
    for method, path, body in STOREFRONT:
        assert "101" not in shown(method, call(client, method, path, body)), path
    listed = client.get("/admin/blacklist", headers=key).get_json()
    assert [(g["goodsId"], g["reason"]) for g in listed["goods"]] == [
        ("101", "recalled by the maker")]
    assert listed["goods"][0]["by"].startswith("key:") and ADMIN not in str(listed)
    assert client.delete("/admin/blacklist/101", headers=key).get_json() == {
        "goodsId": "101", "removed": True}
    assert "101" in shown("GET", client.get(STOREFRONT[0][1]))
    audit = client.get("/admin/blacklist", headers=key).get_json()["audit"]
    assert [a["action"] for a in audit] == ["remove", "add"]


# ------------------------------------------------------------- over HTTP, two workers


@pytest.fixture
def service(published, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPRECS_ADMIN_API_KEYS", ADMIN)
    monkeypatch.setenv("SHOPRECS_SERVICE_WORKERS", "2")
    monkeypatch.setenv("SHOPRECS_SERVICE_RULES_INTERVAL", "0.5")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    settings = dataclasses.replace(published, service_port=free_port())
    proc = start_service(settings, tmp_path / "service.log")
    yield settings, f"http://127.0.0.1:{settings.service_port}"
    proc.kill()
    proc.wait()


def everywhere(base, n=40) -> list[set[str]]:
    """Every storefront route, `n` times each, a new connection per request (the kernel
    spreads them over both workers): what each answer showed."""
    out = []
    for _ in range(n):
        for method, path, body in STOREFRONT:
            resp = requests.request(method, base + path, json=body, timeout=5)
            assert resp.status_code == 200, (path, resp.text)
            out.append(shown(method, resp))
    return out


@pytest.mark.slow
def test_rules_reach_every_worker_without_a_retrain_or_a_failed_request(service):
    settings, base = service
    assert all("101" in s for s in everywhere(base, 5))
    stop, failures, sent = threading.Event(), [], [0]

    def hammer():
        with requests.Session() as http:
            while not stop.is_set():
                for method, path, body in STOREFRONT:
                    resp = http.request(method, base + path, json=body, timeout=5)
                    sent[0] += 1
                    if resp.status_code != 200:
                        failures.append((path, resp.status_code))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        # 101 goes out of stock: a catalog refresh, no retrain
        publish_catalog(settings.warehouse, [{**g, "available": g["id"] != 101}
                                             for g in CATALOG])
        time.sleep(1.5)
        assert all("101" not in s for s in everywhere(base))
        # back in stock, then blacklisted through one worker
        publish_catalog(settings.warehouse, CATALOG)
        time.sleep(1.5)
        assert any("101" in s for s in everywhere(base, 5))
        resp = requests.put(f"{base}/admin/blacklist/101", json={"reason": "recalled"},
                            headers={"X-API-Key": ADMIN}, timeout=5)
        assert resp.status_code == 200
        time.sleep(1.5)
        assert all("101" not in s for s in everywhere(base))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sent[0] > 100 and failures == []
