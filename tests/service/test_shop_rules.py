"""Shop rules through the API: filters on every storefront route, the session's `recent`
goods, the blacklist's admin API, and over HTTP through CherryPy with two worker processes
a catalog refresh and a blacklist change reaching every worker without a retrain and
without a failed request.

The model (tests/conftest.write_model): the shopper's list 101 (bought), 102; 100's
neighbours 101, 102 and rules 100 -> 101, 100 -> 102; popular 100, ABC1.
"""
import shutil
import threading
import time
from urllib.parse import quote, urlencode

import pytest
import requests

from engine.shoprules import change_blacklist, publish_catalog
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
    publish_catalog(published.root, CATALOG)
    settings = published.replace(admin_api_keys=ADMIN, service_rules_interval=0)
    return create_app({"TESTING": True, "SETTINGS": settings}).test_client()


def call(client, method, path, body=None, **params):
    if method == "GET":
        return client.get(path + ("&" if "?" in path else "?") + urlencode(params))
    return client.post(path, json={**body, **params})


# ------------------------------------------------- every route, every arm, exact answers
# A model whose right answers follow from how it is built (write_model):
#   goods 1 Mug, 2 Saucer, 7 Plate (Kitchen); 3 Spoon, 4 Fork, 8 Knife (Cutlery);
#   5 Tea, 6 Jam (Food); each with a price.
#   The shopper's list: 2 (bought), 3, 5 (bought), 7; they bought 2, 5 and, long ago, 6.
#   Popular: 1, 6, 4, 3, 2. Similar: 1 -> 2, 7, 3; 3 -> 4, 8, 1.
#   Rules: 1 -> 2 (0.8), 1 -> 3 (0.6), 3 -> 4 (0.7), {1, 2} -> 7 (0.9).
# "rules in force": 3 blacklisted, 4 out of stock in a catalog refresh that also reprices 2.
GOODS = [("1", "Mug", "Kitchen", 4.5), ("2", "Saucer", "Kitchen", 2.0),
         ("3", "Spoon", "Cutlery", 1.0), ("4", "Fork", "Cutlery", 1.25),
         ("5", "Tea", "Food", 3.0), ("6", "Jam", "Food", 2.5),
         ("7", "Plate", "Kitchen", 3.5), ("8", "Knife", "Cutlery", 1.5)]
OWNED = {"2", "5", "6"}
HIDDEN = {"3", "4"}
REFRESH = [{"id": g, "name": n, "category": c, "price": 2.1 if g == "2" else p,
            "available": g != "4"} for g, n, c, p in GOODS]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from core.config import Settings
    from core.phones import user_key
    from engine import publish
    from experiments.arms import Experiment
    from tests.conftest import TEST_KEY, write_model

    root = tmp_path_factory.mktemp("shop") / "warehouse"
    key = user_key(SHOPPER, TEST_KEY)
    write_model(
        root, "r1",
        recs=[(key, "2", 0.9, 1, True), (key, "3", 0.8, 2, False),
              (key, "5", 0.7, 3, True), (key, "7", 0.6, 4, False)],
        history=[(key, sorted(OWNED))],
        popular=[("1", 0.5, 1), ("6", 0.4, 2), ("4", 0.3, 3), ("3", 0.2, 4), ("2", 0.1, 5)],
        similar=[("1", "2", 0.9, 1), ("1", "7", 0.8, 2), ("1", "3", 0.5, 3),
                 ("3", "4", 0.9, 1), ("3", "8", 0.6, 2), ("3", "1", 0.3, 3)],
        rules=[(["1"], ["2"], 0.8, 4.0, 0.2), (["1"], ["3"], 0.6, 3.0, 0.1),
               (["3"], ["4"], 0.7, 5.0, 0.1), (["1", "2"], ["7"], 0.9, 6.0, 0.05)],
        catalog=[(g, n, True, p, c) for g, n, c, p in GOODS])
    publish(root, "r1")
    arms = "control:model:50, other:popular:50"

    def named(variant: str) -> str:  # an experiment in which the shopper sees `variant`
        return next(name for name in (f"exp{n}" for n in range(100))
                    if Experiment.parse(name, arms).assign(key).variant == variant)

    settings = Settings().replace(warehouse_root=str(root),
                                   privacy_hmac_key=TEST_KEY, service_rules_interval=0,
                                   experiment_arms=arms, events_enabled=False)
    apps = {variant: create_app({"TESTING": True, "SETTINGS": settings.replace(
        experiment_name=named(variant))}) for variant in ("model", "popular")}
    return root, apps


def ask(app, route: str, **params):
    """(goods ids shown, sources, the answer's items) for one request on `route`."""
    client = app.test_client()
    if route == "user":
        resp = client.get(f"/users/{SHOPPER}/recommendations?" + urlencode(params))
    elif route == "stranger":
        resp = client.get(f"/users/{quote('+7 (999) 000-0000')}/recommendations?"
                          + urlencode(params))
    elif route == "similar":
        resp = client.get("/products/1/similar?" + urlencode({"shopper": SHOPPER, **params}))
    elif route == "basket":
        lists = {k: v.split(",") for k, v in params.items() if k in ("category", "exclude")}
        resp = client.post("/recommendations/basket", json={
            "items": params.pop("items", ["1"]), "shopper": SHOPPER, **params, **lists})
    else:
        resp = client.get("/products/1/associations?" + urlencode(params))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    items = resp.get_json()
    goods = [str(i.get("goodsId", i.get("consequent", [None])[0])) for i in items]
    return goods, resp.headers.get("X-Recommendation-Source"), items


CASES = [  # (route, variant, rules in force?, params, the goods, X-Recommendation-Source)
    ("user", "model", False, {"limit": 4}, "2 3 5 7", "personalized"),
    ("user", "model", False, {"limit": 6}, "2 3 5 7 1 6", "personalized,popular"),
    ("user", "model", False, {"limit": 3, "category": "Kitchen"}, "2 7 1",
     "personalized,popular"),
    ("user", "model", False, {"limit": 3, "exclude": "2"}, "3 5 7", "personalized"),
    ("user", "model", False, {"limit": 3, "exclude_bought": "true"}, "3 7 1",
     "personalized,popular"),
    ("user", "model", False, {"limit": 3, "recent": "1"}, "2 3 7", "personalized,context"),
    ("user", "model", False, {"limit": 3, "recent": "1", "exclude_bought": "true"}, "3 7 4",
     "personalized,context,popular"),
    ("user", "model", True, {"limit": 4}, "2 5 7 1", "personalized,popular"),
    ("user", "model", True, {"limit": 3, "exclude_bought": "true"}, "7 1",
     "personalized,popular"),
    ("stranger", "model", False, {"limit": 3}, "1 6 4", "popular"),
    ("stranger", "model", False, {"limit": 2, "recent": "3"}, "4 8", "context"),
    ("stranger", "model", True, {"limit": 3}, "1 6 2", "popular"),
    ("user", "popular", False, {"limit": 3}, "1 6 4", "popular"),
    ("user", "popular", False, {"limit": 3, "exclude_bought": "true"}, "1 4 3", "popular"),
    ("user", "popular", False, {"limit": 2, "recent": "1"}, "6 4", "popular"),
    ("user", "popular", False, {"limit": 2, "category": "Cutlery"}, "4 3", "popular"),
    ("user", "popular", True, {"limit": 3}, "1 6 2", "popular"),
    ("user", "popular", True, {"limit": 3, "exclude_bought": "true"}, "1", "popular"),
    ("similar", "model", False, {"limit": 3}, "2 7 3", "similar"),
    ("similar", "model", False, {"limit": 3, "category": "Kitchen"}, "2 7", "similar"),
    ("similar", "model", False, {"limit": 3, "exclude_bought": "true"}, "7 3 4",
     "similar,popular"),
    ("similar", "model", True, {"limit": 3}, "2 7 6", "similar,popular"),
    ("similar", "popular", False, {"limit": 3}, "6 4 3", "popular"),
    ("similar", "popular", False, {"limit": 3, "exclude_bought": "true"}, "4 3", "popular"),
    ("similar", "popular", True, {"limit": 3}, "6 2", "popular"),
    ("basket", "model", False, {"items": ["1", "2"], "limit": 3}, "7 3", "rules"),
    ("basket", "model", False, {"items": ["1", "2"], "limit": 2, "category": "Cutlery"},
     "3 4", "rules,popular"),
    ("basket", "model", False, {"limit": 3, "exclude_bought": True}, "3 4", "rules,popular"),
    ("basket", "model", True, {"limit": 2}, "2 6", "rules,popular"),
    ("basket", "model", False, {"items": ["5"], "limit": 2}, "1 6", "popular"),
    ("basket", "popular", False, {"limit": 2}, "6 4", "popular"),
    ("basket", "popular", False, {"limit": 2, "exclude_bought": True}, "4 3", "popular"),
    ("associations", "model", False, {}, "2 3", None),
    ("associations", "model", False, {"category": "Cutlery"}, "3", None),
    ("associations", "model", False, {"exclude": "2"}, "3", None),
    ("associations", "model", True, {}, "2", None),
]


@pytest.mark.parametrize("route, variant, in_force, params, goods, sources", CASES,
                         ids=[f"{c[0]}-{c[1]}-{'rules' if c[2] else 'plain'}-{c[3]}"
                              for c in CASES])
def test_every_route_in_every_arm_answers_exactly_what_the_rules_leave(
        shop, route, variant, in_force, params, goods, sources):
    root, apps = shop
    catalog = root / "serving" / "catalog"
    shutil.rmtree(catalog, ignore_errors=True)
    change_blacklist(root, "remove", "3", "test")
    if in_force:
        publish_catalog(root, REFRESH)
        change_blacklist(root, "add", "3", "test", "recalled")
    got, said, items = ask(apps[variant], route, **dict(params))
    assert got == goods.split(), (got, said)
    assert said == sources
    assert not (in_force and HIDDEN & set(got))  # never blacklisted, never out of stock
    if params.get("exclude_bought") in ("true", True):
        assert not OWNED & set(got)  # never a goods the shopper bought, in any arm
    prices = {g: (2.1 if g == "2" and in_force else p) for g, _, _, p in GOODS}
    for item in items if route != "associations" else ():
        assert item["price"] == prices[str(item["goodsId"])]  # the catalog in force's


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
    monkeypatch.setenv("SHOPRECS_SERVICE_RULES_INTERVAL", str(INTERVAL))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    settings = published.replace(service_port=free_port())
    proc = start_service(settings, tmp_path / "service.log")
    yield settings, f"http://127.0.0.1:{settings.service.port}"
    proc.kill()
    proc.wait()


INTERVAL = 0.5  # service.rules_interval of the two-worker service


def by_worker(base: str, n: int = 12) -> dict[str, list[set[str]]]:
    """Every storefront route, `n` times each, a new connection per request (the kernel
    spreads them over the workers): what each answer showed, by the worker (X-Worker)."""
    seen: dict[str, list[set[str]]] = {}
    for _ in range(n):
        for method, path, body in STOREFRONT:
            resp = requests.request(method, base + path, json=body, timeout=5)
            assert resp.status_code == 200, (path, resp.text)
            seen.setdefault(resp.headers["X-Worker"], []).append(shown(method, resp))
    return seen


def until_every_worker(base: str, holds, started: float) -> float:
    """Poll both workers until `holds(answers)` is true of every answer of each, within
    service.rules_interval (plus a second for scheduling on a busy machine) of `started`;
    the seconds it took."""
    deadline = started + INTERVAL + 1.0
    while True:
        seen = by_worker(base, 4)
        if set(seen) == {"0", "1"} and all(holds(a) for answers in seen.values()
                                           for a in answers):
            return time.monotonic() - started
        assert time.monotonic() < deadline, f"not every worker within the interval: {seen}"
        time.sleep(0.05)


@pytest.mark.slow
def test_rules_reach_every_worker_within_the_interval_without_a_failed_request(service):
    settings, base = service
    deadline = time.monotonic() + 30  # the second worker may still be starting
    while set(seen := by_worker(base, 4)) != {"0", "1"} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(seen) == {"0", "1"}  # both workers answered
    assert all("101" in s for answers in seen.values() for s in answers[::4])
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
        # 101 goes out of stock: a catalog refresh, no retrain
        started = time.monotonic()
        publish_catalog(settings.root, [{**g, "available": g["id"] != 101}
                                             for g in CATALOG])
        until_every_worker(base, lambda s: "101" not in s, started)
        # back in stock, then blacklisted through one worker
        started = time.monotonic()
        publish_catalog(settings.root, CATALOG)
        until_every_worker(base, lambda s: "101" in s, started)
        started = time.monotonic()
        resp = requests.put(f"{base}/admin/blacklist/101", json={"reason": "recalled"},
                            headers={"X-API-Key": ADMIN}, timeout=5)
        assert resp.status_code == 200
        until_every_worker(base, lambda s: "101" not in s, started)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sent[0] > 100 and failures == []
