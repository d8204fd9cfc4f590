"""The serving index (engine/index.py): answers past the precomputed list ranked from the
published model for the shopper, exact exclude_bought, mapped arrays, bad files refused.

The model: goods 1 Mug, 2 Saucer, 7 Plate (Kitchen); 3 Spoon, 4 Fork, 8 Knife (Cutlery);
5 Tea, 6 Jam (Food). The shopper's list: 2 (bought), 3; they bought 2 and 5. Popular: 1, 6,
4, 3, 8. Similar: 2 -> 7 (0.9), 1 (0.2). ALS (rank 2): the shopper (0, 1); 8 (0, 0.9),
4 (0, 0.5), 7 (0, 0.1), 2, 3, 5 (0, 0.2), 1 and 6 (1, 0).

Ranked now with the default blend (ALS 0.5, neighbours 0.5, trending 0.25, each scaled to
its best): 7 .556, 8 .55, 4 .428, 1 .361, 3 .211, 6 .2, 2 and 5 .111; popularity alone
would say 1, 6, 4, 3, 8.
"""
import json
import mmap

import numpy as np
import pytest

from core.phones import user_key
from engine import RecommendationEngine, SnapshotError, publish
from engine.reloader import EngineHolder
from engine.shoprules import ShopRules
from tests.conftest import SHOPPER, TEST_KEY, write_model

GOODS = [("1", "Mug", "Kitchen"), ("2", "Saucer", "Kitchen"), ("3", "Spoon", "Cutlery"),
         ("4", "Fork", "Cutlery"), ("5", "Tea", "Food"), ("6", "Jam", "Food"),
         ("7", "Plate", "Kitchen"), ("8", "Knife", "Cutlery")]
STRANGER = "+7 (999) 000-0000"
KEY = user_key(SHOPPER, TEST_KEY)
FACTORS = ({KEY: [0.0, 1.0]},
           {"8": [0.0, 0.9], "4": [0.0, 0.5], "7": [0.0, 0.1], "2": [0.0, 0.2],
            "3": [0.0, 0.2], "5": [0.0, 0.2], "1": [1.0, 0.0], "6": [1.0, 0.0]})


def model(root, version="m1", **changes):
    write_model(root, version, **{
        "recs": [(KEY, "2", 0.9, 1, True), (KEY, "3", 0.8, 2, False)],
        "history": [(KEY, ["2", "5"])],
        "popular": [("1", 0.5, 1), ("6", 0.4, 2), ("4", 0.3, 3), ("3", 0.2, 4), ("8", 0.1, 5)],
        "similar": [("2", "7", 0.9, 1), ("2", "1", 0.2, 2)],
        "rules": [(["1"], ["2"], 0.8, 4.0, 0.2)],
        "catalog": [(g, n, True, 1.0, c) for g, n, c in GOODS],
        "factors": FACTORS, **changes})
    publish(root, version)
    return RecommendationEngine.from_warehouse(root, hmac_key=TEST_KEY)


@pytest.fixture
def engine(settings):
    return model(settings.root)


def ids(recs):
    return [g for g, _ in recs]


def test_past_the_list_the_shopper_gets_their_next_best_goods_not_bestsellers(engine):
    recs, sources = engine.recommend(SHOPPER, 5)
    assert ids(recs) == ["2", "3", "7", "8", "4"] and sources == ("personalized",)
    # a category page: the list's one Cutlery goods, then the shopper's best Cutlery
    cutlery = engine.filter(ShopRules(), categories=("Cutlery",))
    recs, sources = engine.recommend(SHOPPER, 3, only=cutlery)
    assert ids(recs) == ["3", "8", "4"] and sources == ("personalized",)
    # the page's own goods excluded, 8 out of stock: what is left, still theirs
    thinned = engine.filter(ShopRules(unavailable=frozenset({"8"}), catalog="refresh"),
                            exclude=("3", "7"))
    assert ids(engine.recommend(SHOPPER, 4, only=thinned)[0]) == ["2", "4", "1", "6"]
    # a stranger: popular goods
    recs, sources = engine.recommend(STRANGER, 3, only=cutlery)
    assert ids(recs) == ["4", "3", "8"] and sources == ("popular",)


def test_exclude_bought_is_exact_on_every_path(engine):
    bought = {"2", "5"}
    for categories in (None, ("Kitchen",), ("Food",), ("Cutlery", "Food")):
        for recent in ((), ("1",), ("2", "7")):
            only = engine.filter(ShopRules(), categories=categories)
            recs, _ = engine.recommend(SHOPPER, 8, exclude_bought=True, only=only,
                                       recent=recent)
            allowed = {g for g, _, c in GOODS if categories is None or c in categories}
            # never a bought goods; every goods the filters leave, so never short
            assert set(ids(recs)) == allowed - bought - set(recent)
    assert ids(engine.recommend(SHOPPER, 8, exclude_bought=True)[0]) == [
        "3", "7", "8", "4", "1", "6"]


def test_a_shopper_the_version_knows_nothing_personal_of_gets_popular_goods(settings):
    engine = model(settings.root, factors=None, similar=[])
    recs, sources = engine.recommend(SHOPPER, 4)
    assert ids(recs) == ["2", "3", "1", "6"] and sources == ("personalized", "popular")


def test_shoppers_whose_keys_share_a_prefix_are_told_apart(settings):
    keys = [f"shopper-{n}" for n in range(5)]  # the lookup searches 8-byte prefixes first
    engine = model(settings.root, recs=[(k, str(1 + n), 0.5, 1, False)
                                        for n, k in enumerate(keys)], history=[])
    index = engine.snapshot.index
    assert [index.users[index.user(k)].decode() for k in keys] == keys
    assert [engine._users.get(k)[0][0].goods_id for k in keys] == ["1", "2", "3", "4", "5"]
    assert index.user("shopper-9") is None and index.user("shopper") is None


def file_backed(array) -> bool:
    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_workers_map_one_copy_of_the_arrays(engine):
    index = engine.snapshot.index
    # backed by the files, not copied into the process: every worker shares the pages
    assert all(file_backed(a) for a in index.arrays.values())
    assert str(index.mapped["users"].filename).endswith("index/users.npy")


def test_a_result_set_without_a_column_is_refused_at_publish(settings):
    import pyarrow.parquet as pq

    root = settings.root
    model(root, "m1")
    write_model(root, "m2")
    recs = root / "models" / "m2" / "results" / "user_recs" / "part-0.parquet"
    pq.write_table(pq.read_table(recs).drop_columns(["rank"]), recs)
    with pytest.raises(SnapshotError, match=r"m2 cannot be published: .*user_recs lacks "
                                            r"column\(s\) rank"):
        publish(root, "m2")
    assert (root / "serving" / "CURRENT").read_text().strip() == "m1"


def corrupt(folder, how):
    index = folder / "index"
    if how == "truncated":
        data = (index / "recs_goods.npy").read_bytes()
        (index / "recs_goods.npy").write_bytes(data[: len(data) - 8])
        return "recs_goods.npy"
    if how == "wrong dtype":
        np.save(index / "recs_score.npy", np.zeros(2, np.float32))
        return "recs_score.npy"
    if how == "not an array":
        (index / "users.npy").write_text("users")
        return "users.npy"
    meta = json.loads((index / "meta.json").read_text())
    meta["version"] = "m0"
    (index / "meta.json").write_text(json.dumps(meta))
    return "meta.json"


@pytest.mark.parametrize("how", ["truncated", "wrong dtype", "not an array", "other version"])
def test_a_bad_index_file_is_refused_naming_it_and_the_old_version_serves(settings, how):
    root = settings.root
    model(root, "m1")
    holder = EngineHolder(root, lambda snap: RecommendationEngine(snap, hmac_key=TEST_KEY))
    assert holder.reload().status == "reloaded"
    model(root, "m2")
    name = corrupt(root / "serving" / "m2", how)
    result = holder.reload()
    assert result.status == "refused" and name in result.detail, result.detail
    assert holder.version == "m1"
    assert ids(holder.engine.recommend(SHOPPER, 3)[0]) == ["2", "3", "7"]
    with pytest.raises(SnapshotError, match=name):
        RecommendationEngine.from_warehouse(root, hmac_key=TEST_KEY)
