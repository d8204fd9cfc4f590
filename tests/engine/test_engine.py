import pytest

from engine import (
    InvalidPhone,
    RecommendationEngine,
    SnapshotError,
    UnknownProduct,
    current_version,
    publish,
)
from engine.recommender import Rule, Scored
from tests.conftest import TEST_KEY, write_model


@pytest.fixture
def engine(published):
    return RecommendationEngine.from_warehouse(published.root, hmac_key=TEST_KEY)


@pytest.mark.parametrize("phone", ["+7(916)539-6205", "+7 (916) 539-6205", "79165396205",
                                   "89165396205"])
def test_known_shopper_in_any_format_gets_personal_recs(engine, phone):
    items, sources = engine.recommend(phone, limit=2)
    assert sources == ("personalized",)
    assert items == (Scored("101", 0.9), Scored("102", 0.5))
    assert engine.name("101") == "Saucer" and engine.name("nope") is None
    # a list shorter than asked goes on with the shopper's next goods, ranked now: 100 (a
    # neighbour of their 101), then ABC1 (trending only, but in their blend)
    items, sources = engine.recommend(phone, limit=10)
    assert sources == ("personalized",)
    assert [i.goods_id for i in items] == ["101", "102", "100", "ABC1"]


def test_exclude_bought_leaves_out_everything_the_shopper_bought(engine):
    items, sources = engine.recommend("79165396205", limit=10, exclude_bought=True)
    assert sources == ("personalized",)
    # 101 (on their list) and ABC1 (bought long ago, in the history only) never come back
    assert [i.goods_id for i in items] == ["102", "100"]
    assert engine.owned(engine.user_key("79165396205")) == {"101", "ABC1"}


def test_similar_items_best_first(engine):
    assert engine.similar("100") == ((Scored("101", 0.9), Scored("102", 0.7)), ("similar",))
    assert engine.similar("100", limit=1)[0] == (Scored("101", 0.9),)
    assert engine.similar("ABC1")[0] == ()  # known product without neighbours
    with pytest.raises(UnknownProduct):
        engine.similar("nope")


def test_unknown_shopper_gets_popular_items(engine):
    items, sources = engine.recommend("+7 (999) 000-0000", limit=1)
    assert sources == ("popular",)
    assert items == (Scored("100", 0.5),)


def test_malformed_phone_raises(engine):
    with pytest.raises(InvalidPhone):
        engine.recommend("not-a-phone")


def test_associations_single_item_antecedent_sorted(engine):
    by_conf = engine.associations("100")
    assert [r.consequent for r in by_conf] == [("101",), ("102",)]
    assert by_conf[0] == Rule(("100",), ("101",), confidence=0.8, lift=4.0, support=0.2)
    assert [r.consequent for r in engine.associations("100", sort="lift")] == [("102",),
                                                                                ("101",)]
    assert engine.associations("100", min_confidence=0.6, limit=5) == by_conf[:1]
    assert engine.associations("ABC1") == []  # known product, no rules
    with pytest.raises(UnknownProduct):
        engine.associations("nope")


def test_publish_switches_current_and_is_idempotent(published):
    root = published.root
    assert current_version(root) == "v1"
    publish(root, "v1")
    assert current_version(root) == "v1"
    write_model(root, "v2", popular=[("102", 0.9, 1)])
    publish(root, "v2")
    assert current_version(root) == "v2"
    engine = RecommendationEngine.from_warehouse(root, hmac_key=TEST_KEY)
    assert engine.version == "v2"
    assert engine.recommend("+7 (999) 000-0000")[0][0].goods_id == "102"


def test_broken_model_is_refused_and_the_old_version_keeps_serving(published):
    root = published.root
    write_model(root, "bad", popular=[])  # no fallback for unknown shoppers
    with pytest.raises(SnapshotError, match="no popular items"):
        publish(root, "bad")
    (root / "models" / "v3" / "results").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="not completely trained"):
        publish(root, "v3")
    assert current_version(root) == "v1"
    assert sorted(p.name for p in (root / "serving").iterdir()) == ["CURRENT", "v1"]


def test_nothing_published_says_what_to_run(settings):
    with pytest.raises(SnapshotError, match="shoprecs run"):
        RecommendationEngine.from_warehouse(settings.root, hmac_key=TEST_KEY)


def test_collapsing_variants_keeps_one_rule_per_product_and_none_to_its_own(published):
    root = published.root
    write_model(root, "v2", rules=[
        (["100"], ["101"], 0.9, 5.0, 0.2),  # Pink Mug: a colour of 100's own mug
        (["100"], ["102"], 0.8, 4.0, 0.2),  # Red Saucer
        (["100"], ["103"], 0.7, 4.0, 0.2),  # Blue Saucer: the same saucer, another colour
        (["100"], ["104"], 0.6, 3.0, 0.2),  # Saucer Large: and another size
        (["100"], ["105"], 0.5, 2.0, 0.2)],  # Teapot
        catalog=[("100", "GREEN MUG"), ("101", "Pink Mug"), ("102", "Red Saucer"),
                 ("103", "Blue Saucer"), ("104", "Saucer, LARGE"), ("105", "Teapot")])
    publish(root, "v2")
    engine = RecommendationEngine.from_warehouse(root, hmac_key=TEST_KEY)
    every = [r.consequent[0] for r in engine.associations("100")]
    assert every == ["101", "102", "103", "104", "105"]
    distinct = engine.associations("100", collapse_variants=True)
    assert [r.consequent[0] for r in distinct] == ["102", "105"]
    assert engine.associations("100", limit=1, collapse_variants=True) == distinct[:1]
