"""Who may ask what, and what a hostile body gets (service/auth.py, service/api.py,
service/app.py; docs/security.md). The Flask app, with storefront and admin keys set."""
import base64
import json

import pytest

from service import create_app
from tests.conftest import SHOPPER

STOREFRONT, ADMIN = "front-key", "admin-key"
DEEP = b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.fixture
def keyed(published):
    settings = published.replace(storefront_api_keys=STOREFRONT,
                                   admin_api_keys=ADMIN, events_interval=0.05)
    return create_app({"TESTING": True, "SETTINGS": settings})


SHOPPER_ROUTES = [("GET", f"/users/{SHOPPER}/recommendations"),
                  ("GET", f"/merch?phone={SHOPPER}"),
                  ("GET", "/products/100/similar"), ("GET", "/products/100/associations"),
                  ("POST", "/recommendations/basket"), ("POST", "/events"),
                  ("GET", "/experiments"), ("GET", "/models")]


@pytest.mark.parametrize("method, path", SHOPPER_ROUTES)
def test_every_route_with_shop_data_needs_a_key_when_storefront_keys_are_set(keyed, method,
                                                                              path):
    client = keyed.test_client()
    body = {"items": [100]} if path.endswith("basket") else {"events": [{
        "eventId": "e", "type": "click", "goodsId": 100,
        "recommendationId": keyed.extensions["shoprecs.recommendation_ids"]()}]}
    send = {"json": body} if method == "POST" else {}
    refused = client.open(path, method=method, **send)
    assert refused.status_code == 401, refused.get_data(as_text=True)
    assert refused.get_json()["error"]["code"] == "missing_api_key"
    wrong = client.open(path, method=method, headers={"X-API-Key": "nope"}, **send)
    assert wrong.status_code == 401
    for key in (STOREFRONT, ADMIN):
        ok = client.open(path, method=method, headers={"X-API-Key": key}, **send)
        assert ok.status_code in (200, 202), ok.get_data(as_text=True)


def test_probes_and_the_document_stay_open(keyed):
    client = keyed.test_client()
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_the_merch_page_asks_a_browser_for_the_key_and_takes_it_as_basic_auth(keyed):
    client = keyed.test_client()
    refused = client.get(f"/merch?phone={SHOPPER}")
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    basic = base64.b64encode(f"merch:{STOREFRONT}".encode()).decode()
    page = client.get(f"/merch?phone={SHOPPER}", headers={"Authorization": f"Basic {basic}"})
    assert page.status_code == 200 and "Saucer" in page.get_data(as_text=True)
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    html = page.get_data(as_text=True)
    assert html.count(f'nonce="{nonce}"') == 2  # its <style> and <script>, nothing else
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"


def test_admin_keys_are_checked_before_the_body_and_answers_are_not_cached(keyed):
    client = keyed.test_client()
    bad_body = client.put("/admin/blacklist/100", data=b"{broken",
                          content_type="application/json")
    assert bad_body.status_code == 401  # not 400: nothing is read before the key
    listed = client.get("/admin/blacklist", headers={"X-API-Key": ADMIN})
    assert listed.status_code == 200 and listed.headers["Cache-Control"] == "no-store"
    front = client.get("/admin/blacklist", headers={"X-API-Key": STOREFRONT})
    assert front.status_code == 401  # a storefront key is no admin key


@pytest.mark.parametrize("path", ["/recommendations/basket", "/events", "/admin/forget",
                                  "/admin/blacklist/100"])
def test_a_body_nested_too_deep_or_not_json_is_a_400_or_415_never_a_500(keyed, path):
    client = keyed.test_client()
    method = "PUT" if "blacklist" in path else "POST"
    headers = {"X-API-Key": ADMIN}
    deep = client.open(path, method=method, data=DEEP, content_type="application/json",
                       headers=headers)
    assert deep.status_code == 400 and deep.get_json()["error"]["code"] == "invalid_json"
    form = client.open(path, method=method, data=b'{"items": [100]}',
                       content_type="text/plain", headers=headers)
    assert form.status_code == 415
    assert form.get_json()["error"]["code"] == "unsupported_media_type"


def test_the_blacklist_takes_catalog_ids_and_says_so_of_goods_not_yet_listed(keyed):
    client = keyed.test_client()
    headers = {"X-API-Key": ADMIN}
    unknown = client.put("/admin/blacklist/999", json={"reason": "recalled"}, headers=headers)
    assert unknown.status_code == 404
    assert "beforeListing" in unknown.get_json()["error"]["message"]
    early = client.put("/admin/blacklist/999", json={"reason": "recalled",
                                                     "beforeListing": True}, headers=headers)
    assert early.status_code == 200 and early.get_json()["inCatalog"] is False
    listed = client.put("/admin/blacklist/101", json={"reason": "recalled"}, headers=headers)
    assert listed.status_code == 200 and listed.get_json()["inCatalog"] is True
    for bad in ("10%0A1", "a%00b", "a%20b", "x" * 101):
        resp = client.put(f"/admin/blacklist/{bad}", json={"reason": "r"}, headers=headers)
        assert resp.status_code == 400, bad
        assert resp.get_json()["error"]["code"] == "invalid_goods_id"
    goods = {g["goodsId"] for g in client.get("/admin/blacklist", headers=headers)
             .get_json()["goods"]}
    assert goods == {"999", "101"}


def test_an_unkeyed_deployment_serves_without_keys(published):
    client = create_app({"TESTING": True, "SETTINGS": published}).test_client()
    assert client.get(f"/users/{SHOPPER}/recommendations").status_code == 200
    assert client.get("/admin/blacklist").status_code == 403  # admin: never without a key
    assert json.loads(client.get("/openapi.json").data)["paths"]
