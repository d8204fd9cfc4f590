"""Shop rules at request time (engine/shoprules.py): the catalog refresh, the blacklist and
each request's filters, on a snapshot built by hand so every right answer is known.

The hand-built model (tests/conftest.write_model): the shopper's list is 101 (bought
before), 102; goods 100's neighbours are 101, 102 and its rules 100 -> 101 (0.8) and
100 -> 102 (0.5); popular goods are 100, ABC1.
"""
import json

import pytest

from engine import RecommendationEngine, RulesHolder, Scored, ShopRules
from engine.shoprules import (
    AUDIT,
    BLACKLIST,
    RulesError,
    change_blacklist,
    current_catalog,
    publish_catalog,
    read_audit,
)
from tests.conftest import SHOPPER, TEST_KEY

STRANGER = "+7 (999) 000-0000"
CATALOG = [{"id": 100, "name": "Mug", "category": "Kitchen"},
           {"id": 101, "name": "Saucer", "category": "Kitchen", "available": True},
           {"id": 102, "name": "Spoon", "category": "Cutlery"},
           {"id": "ABC1", "name": "Tea", "category": "Food"}]


@pytest.fixture
def engine(published):
    return RecommendationEngine.from_warehouse(published.root, hmac_key=TEST_KEY)


def ids(items):
    return [i[0] for i in items]


def test_the_engine_fills_a_list_the_filters_thinned_with_allowed_goods(engine):
    rules = ShopRules(unavailable=frozenset({"101"}), catalog="refresh")
    recs, sources = engine.recommend(SHOPPER, 3, only=engine.filter(rules))
    assert ids(recs) == ["102", "100", "ABC1"] and sources == ("personalized",)
    # a shopper the version knows nothing personal of: popular goods
    recs, sources = engine.recommend("+7 (999) 000-0000", 3, only=engine.filter(rules))
    assert ids(recs) == ["100", "ABC1"] and sources == ("popular",)
    assert engine.recommend(SHOPPER, 2) == ((Scored("101", 0.9), Scored("102", 0.5)),
                                            ("personalized",))
    # the rules of a snapshot without a catalog refresh: nothing hidden
    assert ids(engine.recommend(SHOPPER, 1, only=engine.filter(
        ShopRules(unavailable=frozenset({"101"}))))[0]) == ["101"]


def test_category_and_exclude_keep_what_they_say_on_every_lookup(engine):
    no_rules = ShopRules(category={"100": "Kitchen", "101": "Kitchen", "102": "Cutlery"},
                         catalog="refresh")
    kitchen = engine.filter(no_rules, categories=("Kitchen",))
    assert ids(engine.recommend(SHOPPER, 10, only=kitchen)[0]) == ["101", "100"]
    assert ids(engine.similar("100", only=kitchen)[0]) == ["101"]
    assert [r.consequent for r in engine.associations("100", only=kitchen)] == [("101",)]
    assert ids(engine.basket(["100"], only=kitchen)[0]) == ["101"]
    no_101 = engine.filter(no_rules, exclude=("101",))
    assert ids(engine.recommend(SHOPPER, 10, only=no_101)[0])[0] == "102"
    assert "101" not in ids(engine.similar("100", only=no_101)[0])
    assert [r.consequent for r in engine.associations("100", only=no_101)] == [("102",)]
    assert "101" not in ids(engine.basket(["100"], only=no_101)[0])


def test_recent_goods_bring_their_neighbours_and_rules(engine):
    # A stranger who just looked at 100: its neighbours and rules, not popular goods, and
    # never 100 itself. 101 is both 100's nearest neighbour (0.9) and its best rule (0.8).
    recs, sources = engine.recommend(STRANGER, 3, recent=("100",))
    assert sources == ("context", "popular") and ids(recs) == ["101", "102", "ABC1"]
    # A known shopper's list blends with the session: 101 and 102 are in both.
    recs, sources = engine.recommend(SHOPPER, 2, recent=("100",))
    assert sources == ("personalized", "context") and ids(recs) == ["101", "102"]
    assert recs[0].score == pytest.approx(1.0)  # best in both halves
    # goods of the session are not offered back
    assert "101" not in ids(engine.recommend(SHOPPER, 5, recent=("101", "100"))[0])


def test_a_catalog_refresh_hides_goods_out_of_stock_and_keeps_the_last_on_failure(published):
    root = published.root
    holder = RulesHolder(root, interval=0)
    assert holder.current().catalog is None
    first = publish_catalog(root, [*CATALOG[:1], {**CATALOG[1], "available": False},
                                   *CATALOG[2:]])
    rules = holder.current()
    assert rules.catalog == first and rules.unavailable == {"101"}
    assert rules.category["102"] == "Cutlery"
    with pytest.raises(RulesError, match="no goods with an id"):
        publish_catalog(root, [{"name": "no id"}])
    assert current_catalog(root) == first and holder.current() is rules
    publish_catalog(root, CATALOG)  # back in stock
    assert holder.current().unavailable == frozenset()


def test_the_blacklist_is_audited_and_every_holder_sees_it(published):
    root = published.root
    one, other = RulesHolder(root, interval=0), RulesHolder(root, interval=0)
    change_blacklist(root, "add", "102", "key:abc", "prescription only")
    assert set(one.current().blacklist) == set(other.current().blacklist) == {"102"}
    assert one.current().blacklist["102"]["reason"] == "prescription only"
    assert change_blacklist(root, "remove", "102", "key:def")["by"] == "key:abc"
    assert change_blacklist(root, "remove", "102", "key:def") is None  # idempotent
    assert other.current().blacklist == {}
    audit = read_audit(root)
    assert [(a["action"], a["goods_id"], a["by"], a["found"]) for a in audit] == [
        ("remove", "102", "key:def", False), ("remove", "102", "key:def", True),
        ("add", "102", "key:abc", True)]
    assert (root / AUDIT).exists()


def test_an_unreadable_blacklist_keeps_the_rules_in_force(published):
    root = published.root
    holder = RulesHolder(root, interval=0)
    change_blacklist(root, "add", "102", "key:abc", "recalled")
    assert "102" in holder.current().blacklist
    (root / BLACKLIST).write_text("{not json")
    assert "102" in holder.current().blacklist and holder.errors == 1
    (root / BLACKLIST).write_text(json.dumps({"goods": {}}))
    assert holder.current().blacklist == {}


def test_the_snapshot_catalog_applies_until_a_refresh(published, tmp_path):
    """A night whose catalog had `available` and `category` serves them before any refresh."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine import Snapshot

    snap = published.root / "serving" / "v1"
    table = pa.table({"goods_id": ["100", "101", "102", "ABC1"],
                      "name": ["Mug", "Saucer", "Spoon", "Tea"],
                      "available": [True, False, None, True],
                      "category": ["Kitchen", "Kitchen", None, "Food"]})
    for f in (snap / "catalog").glob("*.parquet"):
        f.unlink()
    pq.write_table(table, snap / "catalog" / "part-0.parquet")
    engine = RecommendationEngine(Snapshot.load(snap), hmac_key=TEST_KEY)
    only = engine.filter(ShopRules())
    assert only.hidden == {"101"} and only.category_of == {"100": "Kitchen", "101": "Kitchen",
                                                           "ABC1": "Food"}
    assert "101" not in ids(engine.recommend(SHOPPER, 10, only=only)[0])
