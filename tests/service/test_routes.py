from urllib.parse import quote

import pytest

from service import create_app


@pytest.fixture
def client(published):
    return create_app({"TESTING": True, "SETTINGS": published}).test_client()


def error_code(resp):
    return resp.get_json()["error"]["code"]


def test_user_recommendations_personalized(client):
    resp = client.get(f"/users/{quote('+7 (916) 539-6205')}/recommendations?limit=1")
    assert resp.status_code == 200
    assert resp.get_json() == [{"goodsId": 101, "rating": 0.9, "name": "Saucer", "price": 2.25}]
    assert resp.headers["X-Model-Version"] == "v1"
    assert resp.headers["X-Recommendation-Source"] == "personalized"


def test_unknown_shopper_falls_back_to_popular(client):
    resp = client.get("/users/89990000000/recommendations")
    assert resp.status_code == 200
    assert [i["goodsId"] for i in resp.get_json()] == [100, "ABC1"]
    assert resp.headers["X-Recommendation-Source"] == "popular"


@pytest.mark.parametrize("url, status, code", [
    ("/users/abc/recommendations", 400, "invalid_phone"),
    ("/users/123/recommendations", 400, "invalid_phone"),
    ("/users/79165396205/recommendations?limit=0", 400, "invalid_limit"),
    ("/users/79165396205/recommendations?limit=1000", 400, "invalid_limit"),
    ("/users/79165396205/recommendations?limit=ten", 400, "invalid_limit"),
    ("/products/nope/associations", 404, "unknown_product"),
    ("/products/100/associations?sort=price", 400, "invalid_sort"),
    ("/products/100/associations?min_confidence=2", 400, "invalid_min_confidence"),
    ("/no/such/route", 404, "not_found"),
    ("/users/79165396205/recommendations?exclude_bought=maybe", 400, "invalid_exclude_bought"),
    ("/products/nope/similar", 404, "unknown_product"),
    ("/products/100/similar?limit=-1", 400, "invalid_limit"),
])
def test_bad_input_gets_a_json_4xx(client, url, status, code):
    resp = client.get(url)
    assert resp.status_code == status
    assert error_code(resp) == code
    assert resp.get_json()["error"]["message"]


def test_wrong_method_is_a_json_405(client):
    resp = client.post("/health")
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


def test_exclude_bought_and_similar(client):
    resp = client.get("/users/79165396205/recommendations?exclude_bought=true&limit=2")
    # 101 was bought; then 100, ranked now as a neighbour of their 101 (never ABC1, bought
    # long ago: the history knows it)
    assert [i["goodsId"] for i in resp.get_json()] == [102, 100]
    assert resp.headers["X-Recommendation-Source"] == "personalized"
    resp = client.get("/products/100/similar?limit=1")
    assert resp.status_code == 200
    assert resp.get_json() == [{"goodsId": 101, "score": 0.9, "name": "Saucer", "price": 2.25}]
    assert resp.headers["X-Model-Version"] == "v1"
    resp = client.get("/products/100/similar?limit=2&shopper=79165396205&exclude_bought=true")
    # not 101 (bought), nor 100 itself, nor the fill's ABC1 (bought long ago): what is left
    assert [i["goodsId"] for i in resp.get_json()] == [102]
    resp = client.get("/products/100/similar?exclude_bought=true")
    assert resp.status_code == 400 and error_code(resp) == "invalid_exclude_bought"


def test_associations(client):
    resp = client.get("/products/100/associations?sort=lift&limit=1")
    assert resp.status_code == 200
    assert resp.get_json()[0]["consequent"] == [102]
    assert resp.headers["X-Model-Version"] == "v1"


def test_models_health_ready(client):
    assert client.get("/models").get_json()["version"] == "v1"
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {"status": "ready", "version": "v1"}


def test_not_ready_without_a_snapshot(settings):
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    assert client.get("/ready").status_code == 503
    resp = client.get("/users/79165396205/recommendations")
    assert resp.status_code == 503 and error_code(resp) == "not_ready"
    assert client.get("/health").status_code == 200
