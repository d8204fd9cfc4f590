"""Basket lookups, the encoded answers, hot reload and rollback of the engine."""
import json
import threading

import pytest

from engine import (
    EngineHolder,
    RecommendationEngine,
    SnapshotError,
    current_version,
    publish,
    published_versions,
    rollback,
)
from engine.recommender import Scored, Suggestion
from service import answers
from service.answers import BASKET, RECOMMENDATIONS, RULES, SIMILAR
from tests.conftest import TEST_KEY, write_model


def make_engine(snapshot):
    return RecommendationEngine(snapshot, hmac_key=TEST_KEY)


@pytest.fixture
def engine(published):
    return RecommendationEngine.from_warehouse(published.root, hmac_key=TEST_KEY)


def test_basket_fires_rules_inside_the_cart_best_first_without_cart_items(engine):
    # cart {100}: 100->101 (0.8), 100->102 (0.5); {100,101}->102 needs 101 too
    items, source = engine.basket(["100"])
    assert source == ("rules",)
    assert items == [Suggestion("101", 0.8, ("100",)), Suggestion("102", 0.5, ("100",))]
    # cart {100,101}: 102 by its best rule ({100,101}->102, 0.9), once; 101->100 and
    # 100->101 are left out because their consequent is already in the cart
    items, source = engine.basket(["101", "100"])
    assert source == ("rules",)
    assert items == [Suggestion("102", 0.9, ("100", "101"))]
    assert engine.basket(["100"], limit=1)[0] == [Suggestion("101", 0.8, ("100",))]


def test_basket_big_cart_uses_the_member_index_with_the_same_answer(engine):
    cart = ["100", "101"] + [f"x{i}" for i in range(40)]  # unknown ids are ignored
    assert engine.basket(cart) == engine.basket(["100", "101"])


def test_basket_falls_back_to_similar_then_popular(published):
    write_model(published.root, "v2", rules=[(["100"], ["101"], 0.8, 4.0, 0.2)],
                similar=[("102", "ABC1", 0.4, 1)])
    publish(published.root, "v2")
    engine = RecommendationEngine.from_warehouse(published.root, hmac_key=TEST_KEY)
    items, source = engine.basket(["102"])  # no rule starts from 102
    assert source == ("similar",)
    assert items == [Suggestion("ABC1", 0.4, ("102",))]
    items, source = engine.basket(["unknown"])
    assert source == ("popular",) and [i.goods_id for i in items] == ["100", "ABC1"]
    assert [i.goods_id for i in engine.basket(["100", "101"])[0]] == ["ABC1"]


def test_answers_are_sent_in_their_shapes(engine):
    recs, _ = engine.recommend("79165396205", 2)
    prices = {"101": 2.25}
    assert RECOMMENDATIONS.json(answers.scored(engine, recs, prices)) == json.dumps(
        [{"goodsId": 101, "rating": 0.9, "name": "Saucer", "price": 2.25},
         {"goodsId": 102, "rating": 0.5, "name": "Spoon", "price": None}],
        separators=(",", ":")).encode()
    assert json.loads(RECOMMENDATIONS.json(answers.scored(engine, recs, {}), "r1")) == {
        "recommendationId": "r1", "items": [
            {"goodsId": 101, "rating": 0.9, "name": "Saucer", "price": None},
            {"goodsId": 102, "rating": 0.5, "name": "Spoon", "price": None}]}
    assert json.loads(RULES.dump_json(answers.rules(
        engine, engine.associations("100", sort="lift", limit=1)))) == [
        {"antecedent": [100], "consequent": [102], "consequentNames": ["Spoon"],
         "confidence": 0.5, "lift": 6.0, "support": 0.1}]
    assert json.loads(BASKET.json(answers.suggestions(
        engine, engine.basket(["100", "101"])[0], {}))) == [
        {"goodsId": 102, "score": 0.9, "name": "Spoon", "price": None, "because": [100, 101]}]
    assert json.loads(SIMILAR.json(answers.scored(
        engine, [Scored("ABC1", 1 / 3), Scored("007", float("nan"))], {}, "score"))) == [
        {"goodsId": "ABC1", "score": 0.333333, "name": "Tea", "price": None},
        {"goodsId": "007", "score": 0.0, "name": None, "price": None}]


def test_find_products_by_id_or_name(engine):
    assert engine.find_products("100") == [("100", "Mug")]
    assert engine.find_products("sauc") == [("101", "Saucer")]
    assert engine.find_products("zzz") == []


def test_holder_swaps_to_a_new_version_and_refuses_a_broken_one(published):
    root = published.root
    holder = EngineHolder(root, make_engine)
    assert holder.reload().status == "reloaded" and holder.version == "v1"
    assert holder.reload().status == "unchanged"
    write_model(root, "v2", popular=[("102", 0.9, 1)])
    publish(root, "v2")
    old = holder.engine
    assert holder.reload().status == "reloaded" and holder.version == "v2"
    assert old.version == "v1"  # a request holding the old engine finishes on it
    broken = root / "serving" / "v3"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"version": "v3"}')  # no result sets
    (root / "serving" / "CURRENT").write_text("v3\n")
    result = holder.reload()
    assert result.status == "refused" and "v3" in result.detail and "lacks" in result.detail
    assert holder.version == "v2"
    assert holder.reload().status == "unchanged"  # not retried until forced or CURRENT moves
    assert holder.reload(force=True).status == "refused"


def test_holder_polls_current(published):
    root = published.root
    holder = EngineHolder(root, make_engine)
    holder.reload()
    seen = threading.Event()
    holder.listeners.append(lambda r: r.status == "reloaded" and seen.set())
    holder.start_polling(0.05)
    try:
        write_model(root, "v2")
        publish(root, "v2")
        assert seen.wait(10), "the poll thread did not pick up v2"
        assert holder.version == "v2"
    finally:
        holder.stop_polling()


def test_rollback_to_the_previous_published_version_and_to_a_named_one(published):
    root = published.root
    for version in ("v2", "v3"):
        write_model(root, version)
        publish(root, version)
    assert [v for v, _ in published_versions(root)] == ["v1", "v2", "v3"]
    assert rollback(root) == ("v3", "v2") and current_version(root) == "v2"
    assert rollback(root) == ("v2", "v1")
    with pytest.raises(SnapshotError, match="oldest"):
        rollback(root)
    assert rollback(root, "v3") == ("v1", "v3")
    with pytest.raises(SnapshotError, match="not published.*v1, v2, v3"):
        rollback(root, "v9")
    assert current_version(root) == "v3"


def test_rollback_refuses_a_target_that_does_not_load(published):
    root = published.root
    write_model(root, "v2")
    publish(root, "v2")
    for part in (root / "serving" / "v1" / "popular").iterdir():
        part.unlink()
    with pytest.raises(SnapshotError, match="popular"):
        rollback(root)
    assert current_version(root) == "v2"
