"""Basket, API keys, odd input, metrics, OpenAPI and the merchandiser page."""
import json
import re
from urllib.parse import quote

import pytest

from engine import publish
from service import create_app
from tests.conftest import write_model


def make_client(settings, **overrides):
    s = settings.replace(**overrides)
    return create_app({"TESTING": True, "SETTINGS": s}).test_client()


@pytest.fixture
def client(published):
    return make_client(published)


def error(resp):
    body = resp.get_json()
    assert resp.mimetype == "application/json" and set(body) == {"error"}
    assert body["error"]["message"]
    return resp.status_code, body["error"]["code"]


def test_basket_recommends_what_the_rules_say(client):
    resp = client.post("/recommendations/basket", json={"items": [100, "101"], "limit": 5})
    assert resp.status_code == 200
    assert resp.get_json() == [{"goodsId": 102, "score": 0.9, "name": "Spoon", "price": 1.0,
                                "because": [100, 101]}]
    assert resp.headers["X-Recommendation-Source"] == "rules"
    assert resp.headers["X-Model-Version"] == "v1"


@pytest.mark.parametrize("body, code", [
    (b"{not json", "invalid_json"),
    (b"[100, 101]", "invalid_json"),
    (b'"items"', "invalid_json"),
    (b'{"items": []}', "invalid_items"),
    (b'{"items": [true]}', "invalid_items"),
    (b'{"items": [[100]]}', "invalid_items"),
    (b'{"items": [1.5]}', "invalid_items"),
    (b'{"items": "100"}', "invalid_items"),
    (b'{"items": [100], "limit": 0}', "invalid_limit"),
    (b'{"items": [100], "limit": "5"}', "invalid_limit"),
    (b'{"items": [100], "limit": 101}', "invalid_limit"),
    (json.dumps({"items": list(range(101))}).encode(), "invalid_items"),
    ("{\"items\": [\"\u00e9\"".encode(), "invalid_json"),
    (b"\xff\xfe garbage", "invalid_json"),
])
def test_bad_basket_bodies_are_json_400s(client, body, code):
    resp = client.post("/recommendations/basket", data=body, content_type="application/json")
    assert error(resp) == (400, code)


def test_body_over_the_limit_is_a_json_413(published):
    client = make_client(published, service_max_body_bytes=100)
    resp = client.post("/recommendations/basket", json={"items": list(range(50))})
    assert error(resp) == (413, "request_entity_too_large")


@pytest.mark.parametrize("phone", ["abc", "123", "+7 (916) 539-620", "7916539620512345678",
                                   "+", "79165396205abc", "\u0661\u0662\u0663", "%00",
                                   "9" * 5000, "+7 (916) 539-6205;DROP", "\u202e79165396205"])
def test_malformed_phones_are_json_400s(client, phone):
    resp = client.get(f"/users/{quote(phone, safe='')}/recommendations")
    assert error(resp) == (400, "invalid_phone")


@pytest.mark.parametrize("goods_id", ["nope", "\u5546\u54c1", "x" * 5000, "..", "%2e%2e",
                                      "100%00", "100 ", "-100", "1e2", "\U0001f600"])
@pytest.mark.parametrize("what", ["associations", "similar"])
def test_unknown_and_odd_product_ids_are_json_404s(client, goods_id, what):
    resp = client.get(f"/products/{quote(goods_id, safe='%')}/{what}")
    assert error(resp) == (404, "unknown_product")


@pytest.mark.parametrize("url", ["/products/../../etc/passwd/associations",
                                 "/products/100%2F..%2F101/associations",
                                 "/products//associations", "/users//recommendations",
                                 "/users/79165396205/recommendations/"])
def test_path_tricks_are_json_404s(client, url):
    assert error(client.get(url))[0] == 404


@pytest.mark.parametrize("query, code", [
    ("limit=101", "invalid_limit"), ("limit=-5", "invalid_limit"), ("limit=1.5", "invalid_limit"),
    ("limit=", "invalid_limit"), ("limit=99999999999999999999999", "invalid_limit"),
    ("min_confidence=nan", "invalid_min_confidence"),
    ("min_confidence=-0.1", "invalid_min_confidence"),
    ("min_confidence=inf", "invalid_min_confidence"), ("sort=LIFT", "invalid_sort"),
])
def test_parameters_out_of_range_are_json_400s(client, query, code):
    assert error(client.get(f"/products/100/associations?{query}")) == (400, code)


def test_admin_reload_needs_a_valid_key(published):
    client = make_client(published, admin_api_keys="k1, k2")
    assert error(client.post("/admin/reload")) == (401, "missing_api_key")
    assert error(client.post("/admin/reload", headers={"X-API-Key": "k3"})) == (
        401, "invalid_api_key")
    assert error(client.post("/admin/reload", headers={"X-API-Key": "k\u00e9"}))[0] == 401
    resp = client.post("/admin/reload", headers={"X-API-Key": "k2"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "unchanged"
    write_model(published.root, "v2")
    publish(published.root, "v2")
    resp = client.post("/admin/reload", headers={"X-API-Key": "k1"})
    assert resp.get_json() == {"status": "reloaded", "version": "v2", "detail": ""}
    assert client.get("/models").get_json()["version"] == "v2"


def test_admin_is_disabled_without_keys(client):
    assert error(client.post("/admin/reload", headers={"X-API-Key": ""})) == (
        403, "api_disabled")


def test_admin_reload_of_a_broken_version_is_a_409_and_the_old_one_serves(published):
    client = make_client(published, admin_api_keys="k")
    (published.root / "serving" / "v9").mkdir()
    (published.root / "serving" / "CURRENT").write_text("v9\n")
    status, code = error(client.post("/admin/reload", headers={"X-API-Key": "k"}))
    assert (status, code) == (409, "reload_refused")
    assert client.get("/ready").get_json()["version"] == "v1"


def test_storefront_keys_when_configured(published):
    client = make_client(published, storefront_api_keys="shop")
    for headers in ({}, {"X-API-Key": "nope"}):
        assert error(client.get("/users/79165396205/recommendations", headers=headers))[0] == 401
        assert error(client.post("/recommendations/basket", json={"items": [100]},
                                 headers=headers))[0] == 401
    ok = client.get("/users/79165396205/recommendations?limit=2",
                    headers={"X-API-Key": "shop"})
    assert ok.status_code == 200 and ok.headers["X-Recommendation-Source"] == "personalized"
    assert client.get("/health").status_code == 200  # operators' routes stay open


def test_metrics_count_requests_per_route_and_show_the_snapshot(client):
    client.get("/users/79165396205/recommendations")
    client.get("/users/abc/recommendations")
    client.get("/no/such/thing")
    text = client.get("/metrics").get_data(as_text=True)
    users = 'route="/users/{phone}/recommendations"'
    assert f'shoprecs_http_requests_total{{{users},status="200"}} 1.0' in text
    assert f'shoprecs_http_requests_total{{{users},status="400"}} 1.0' in text
    assert 'shoprecs_http_requests_total{route="other",status="404"} 1.0' in text
    assert f'shoprecs_http_request_duration_seconds_bucket{{le="0.001",{users}}}' in text
    assert 'shoprecs_snapshot_info{version="v1"} 1.0' in text
    age = [ln for ln in text.splitlines() if ln.startswith("shoprecs_snapshot_age_seconds ")]
    assert age and 0 <= float(age[0].split()[1]) < 600
    assert "79165396205" not in text


def test_every_route_is_counted_under_its_own_template(client):
    """Admin routes too, refused or not; paths with values never become labels."""
    rules = [r for r in client.application.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        path = re.sub(r"<(?:\w+:)?(\w+)>", "x1", rule.rule)
        client.open(path, method=sorted(rule.methods - {"HEAD", "OPTIONS"})[0])
    text = client.get("/metrics").get_data(as_text=True)
    counted = set(re.findall(r'shoprecs_http_requests_total\{route="([^"]+)"', text))
    assert counted == {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule) for r in rules}
    assert {"/admin/forget", "/admin/forget/{job}", "/admin/reload"} <= counted


def test_openapi_documents_every_route(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    rules = {r.rule.replace("<", "{").replace(">", "}")
             for r in client.application.url_map.iter_rules()}
    documented = set(doc["paths"])
    assert documented == rules - {"/static/{path:filename}", "/", "/merch", "/openapi.json"}


def test_merch_page_shows_a_product_its_rules_and_neighbours(client):
    page = client.get("/merch?q=mug").get_data(as_text=True)
    assert 'id="product">100' in page and "Mug" in page
    assert 'id="rules"' in page and "Saucer" in page and "0.800" in page and "4.00" in page
    assert 'id="similar"' in page
    assert 'id="version">v1' in page
    several = client.get("/merch?q=s").get_data(as_text=True)  # Saucer, Spoon
    assert 'id="matches"' in several and "Saucer" in several and "Spoon" in several
    shopper = client.get("/merch?phone=%2B7+916+539+62+05").get_data(as_text=True)
    assert 'id="recs"' in shopper and "personalized" in shopper
    bad = client.get("/merch?phone=abc").get_data(as_text=True)
    assert 'id="phone-error"' in bad
    assert "&lt;script&gt;" in client.get("/merch?q=<script>").get_data(as_text=True)


@pytest.mark.parametrize("page", ["README.md", "docs/serving.md"])
def test_the_api_tables_list_every_route(client, page):
    """Each route the app has (Flask's url map) stands in the page's API table, by its
    method and its path as the docs write parameters (`<id>` for `<goods_id>`)."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / page).read_text()
    table = " ".join(line for line in text.splitlines() if line.startswith("|"))
    missing = []
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule == "/":
            continue
        path = re.sub(r"<goods_id>", "<id>", rule.rule)
        stem = re.escape(path.split("<")[0]) if "<" in path else re.escape(path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            written = re.search(rf"{method}[^|]*?{stem}" if method != "GET" else stem, table)
            if written is None:
                missing.append(f"{method} {rule.rule}")
    assert not missing, f"{page} does not list {missing}"
