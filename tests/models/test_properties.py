"""Property-based tests (hypothesis) on random small inputs: the edges a real shop reaches.

Empty blocks, one shopper, one product, shoppers only in the holdout, guests only, tied
scores: the evaluation must agree with the metric definitions, the blend must keep its
ranking rules, the id mapping must stay collision-free, and every pandas function must
return the types it declares.
"""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import evaluation as ev
from models import hybrid, ids
from models._pandas import conform, dtype
from tests.models.test_evaluation import _expected

USERS = [f"u{i}" for i in range(5)]
GOODS = [f"g{i}" for i in range(4)]
SPARK = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _typed(frame: pd.DataFrame, schema) -> bool:
    return list(frame.columns) == schema.fieldNames() and all(
        str(frame[f.name].dtype) == dtype(f.dataType) for f in schema)


pairs = st.sets(st.tuples(st.sampled_from(USERS), st.sampled_from(GOODS)), max_size=12)


@pytest.mark.spark
@SPARK
@given(train=pairs,
       test=st.sets(st.tuples(st.sampled_from([*USERS, "new1", "new2", None]),
                              st.sampled_from(GOODS)), max_size=12),
       recs=st.lists(st.tuples(st.sampled_from([*USERS, "new1"]), st.sampled_from(GOODS),
                               st.sampled_from([0.0, 0.5, 1.0])),  # few values: many ties
                     max_size=20, unique_by=lambda r: r[:2]),
       k=st.integers(1, 4))
def test_evaluation_agrees_with_the_definitions(spark, train, test, recs, k):
    # Includes: no test at all, only guests in the test, shoppers only in the holdout
    # ("new1"), one shopper, one goods, and blocks of shoppers with nothing to measure.
    schema = "user_key string, goods_id string"
    got = ev.evaluate_many(
        {"m": spark.createDataFrame(recs, f"{schema}, score double")},
        spark.createDataFrame(sorted(train), schema),
        spark.createDataFrame(sorted(test, key=str), schema), k=k, catalog_size=len(GOODS))
    want = _expected(recs, train, test, k, len(GOODS))
    for mode in ev.MODES:
        assert got["m"][mode] == pytest.approx(want[mode]), mode


@pytest.mark.spark
@SPARK
@given(previous=st.sets(st.sampled_from([f"k{i:02d}" for i in range(20)]), max_size=8),
       first=st.integers(0, 50),
       keys=st.lists(st.one_of(st.none(), st.sampled_from([f"k{i:02d}" for i in range(25)])),
                     max_size=15))
def test_id_mapping_keeps_old_ids_and_numbers_new_keys_after_them(spark, previous, first, keys):
    old = [(key, first + n * 3) for n, key in enumerate(sorted(previous))]  # gaps are fine
    prev = spark.createDataFrame(old, ids.MAPPING_SCHEMA) if old else None
    got = ids.extend(prev, spark.createDataFrame([(k,) for k in keys], "key string")).collect()
    mapping = {r.key: r.id for r in got}
    assert len(mapping) == len(got)  # one id per key
    assert len(set(mapping.values())) == len(got)  # collision-free
    assert {k: mapping[k] for k, _ in old} == dict(old)  # a shopper keeps their id
    fresh = sorted({k for k in keys if k is not None} - previous)
    start = max((i for _, i in old), default=-1) + 1
    assert [mapping[k] for k in fresh] == list(range(start, start + len(fresh)))
    assert None not in mapping


# The pandas pass of hybrid.recommend, on one block's rows as the cogroup hands them over.
@st.composite
def blocks(draw):
    goods = GOODS[:draw(st.integers(1, len(GOODS)))]
    users = USERS[:draw(st.integers(0, 3))]
    bought = draw(st.sets(st.tuples(st.sampled_from(users), st.sampled_from(goods)))
                  if users else st.just(set()))
    repeat = {p: math.log1p(draw(st.integers(1, 3))) for p in sorted(bought)}
    factored = draw(st.sets(st.sampled_from(users))) if users else set()
    vector = st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0]), min_size=2, max_size=2)
    shopper = [dict(user_key=u, goods_id=g, repeat=r, weight=r / 2, features=None)
               for (u, g), r in repeat.items()]
    shopper += [dict(user_key=u, goods_id=None, repeat=None, weight=None,
                     features=np.array(draw(vector), np.float32)) for u in sorted(factored)]
    rows = [dict(kind="goods", item=g, other=None, value=None, features=None) for g in goods]
    rows += [dict(kind="factors", item=g, other=None, value=None,
                  features=np.array(draw(vector), np.float32))
             for g in sorted(draw(st.sets(st.sampled_from(goods))))]
    rows += [dict(kind="neighbour", item=a, other=b, value=draw(st.sampled_from([0.5, 1.0])),
                  features=None)
             for a, b in sorted(draw(st.sets(st.tuples(st.sampled_from(goods),
                                                       st.sampled_from(goods))))) if a != b]
    rows += [dict(kind="trending", item=g, other=None, value=draw(st.sampled_from([0.5, 1.0])),
                  features=None) for g in sorted(draw(st.sets(st.sampled_from(goods))))]
    columns = ["user_key", "goods_id", "repeat", "weight", "features"]
    return (pd.DataFrame(shopper, columns=columns),
            pd.DataFrame(rows, columns=["kind", "item", "other", "value", "features"]), repeat)


weights = st.fixed_dictionaries({c: st.sampled_from([0.0, 0.5, 1.0]) for c in hybrid.COMPONENTS}
                                ).filter(lambda w: any(w.values()))


@settings(max_examples=300, deadline=None)
@given(block=blocks(), blend=weights, rebuy=st.sampled_from([1.0, 0.5, 0.0]),
       k=st.integers(1, 3))
def test_the_blend_keeps_its_ranking_rules(block, blend, rebuy, k):
    shopper_rows, goods_rows, repeat = block
    params = hybrid.HybridParams(candidates=2)
    blends = {"b": {**blend, "rebuy": rebuy}, "plain": {**blend, "rebuy": 1.0}}
    out = hybrid._recommend_block(params, k, blends)(shopper_rows, goods_rows)
    assert _typed(out, hybrid.RECOMMEND_SCHEMA)
    owners = {u for u, _ in repeat}
    for (model, user), rows in out.groupby(["model", "user_key"]):
        assert user in owners | set(shopper_rows["user_key"])
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert np.all(np.diff(rows["score"].to_numpy()) <= 0)  # best first ...
        for _, tied in rows.groupby("score"):  # ... ties by goods id
            assert tied["goods_id"].is_monotonic_increasing
        assert rows["bought"].tolist() == [(user, g) in repeat for g in rows["goods_id"]]
        assert (~rows["bought"]).sum() <= k and rows["bought"].sum() <= k
        if model == "b" and rebuy == 0.0:
            assert not rows["bought"].any()
    plain = out[out["model"] == "plain"].set_index(["user_key", "goods_id"])["score"]
    mine = out[out["model"] == "b"].set_index(["user_key", "goods_id"])
    for (user, goods), row in mine.iterrows():
        if (user, goods) in plain.index:  # rebuy scales what was bought, nothing else
            assert row["score"] == pytest.approx(plain[(user, goods)] * (
                rebuy if row["bought"] else 1.0))


@settings(max_examples=200, deadline=None)
@given(block=blocks(), k=st.integers(1, 4))
def test_repeat_alone_lists_what_each_shopper_bought_most(block, k):
    shopper_rows, goods_rows, repeat = block
    out = hybrid._recommend_block(hybrid.HybridParams(), k, {"r": {"repeat": 1.0}})(
        shopper_rows, goods_rows)
    for user in {u for u, _ in repeat}:
        mine = {g: r for (u, g), r in repeat.items() if u == user}
        peak = max(mine.values())
        want = sorted(mine, key=lambda g: (-mine[g], g))[:k]
        rows = out[out["user_key"] == user]
        assert rows["goods_id"].tolist() == want
        assert rows["score"].tolist() == pytest.approx([mine[g] / peak for g in want])


def test_empty_blocks_return_the_declared_types():
    empty_shoppers = pd.DataFrame(columns=["user_key", "goods_id", "repeat", "weight",
                                           "features"])
    goods = pd.DataFrame([dict(kind="goods", item="g0", other=None, value=None,
                               features=None)])
    out = hybrid._recommend_block(hybrid.HybridParams(), 3, {"b": {"als": 1.0}})(
        empty_shoppers, goods)
    assert out.empty and _typed(out, hybrid.RECOMMEND_SCHEMA)
    neighbours = hybrid._block_neighbours(3, 8)(pd.DataFrame(
        {"block": [0], "user_key": ["u"], "goods_id": ["g0"], "n": [1], "item_block": [0]}))
    assert neighbours.empty and _typed(neighbours, hybrid.NEIGHBOUR_SCHEMA)


@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=3)),
                          st.one_of(st.none(), st.floats(allow_nan=True)),
                          st.integers(-5, 5), st.booleans()), max_size=5))
def test_conform_gives_every_column_its_declared_type(rows):
    frame = pd.DataFrame(rows, columns=["goods_id", "score", "rank", "bought"])
    frame["user_key"], frame["model"] = "u", "m"
    out = conform(frame, hybrid.RECOMMEND_SCHEMA)
    assert _typed(out, hybrid.RECOMMEND_SCHEMA) and len(out) == len(rows)
    with pytest.raises(ValueError, match=r"lacks the declared columns \['model'\]"):
        conform(frame.drop(columns="model"), hybrid.RECOMMEND_SCHEMA)
