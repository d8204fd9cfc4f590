import math

import pytest

from models import evaluation as ev
from tests.models import definitions as d

REC, REL = ["a", "b", "c", "d"], {"b", "d", "e"}


def test_metrics_against_hand_computed_values():
    assert d.precision_at_k(REC, REL, 4) == 0.5
    assert d.recall_at_k(REC, REL, 4) == pytest.approx(2 / 3)
    assert d.average_precision_at_k(REC, REL, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert d.ndcg_at_k(REC, REL, 4) == pytest.approx(dcg / (1 + 1 / math.log2(3) + 0.5))
    assert d.precision_at_k(REC, REL, 2) == 0.5 and d.recall_at_k(REC, set(), 2) == 0.0
    assert d.average_precision_at_k(["b", "d"], {"b", "d"}, 2) == 1.0
    assert d.ndcg_at_k(["x"], {"b"}, 1) == 0.0


@pytest.mark.spark
def test_spark_evaluator_agrees_with_the_definitions(spark):
    recs = spark.createDataFrame(
        [("u1", g, 1.0 - i / 10) for i, g in enumerate(REC)] + [("u2", "x", 0.9), ("u2", "y", 0.8),
                                                               ("u3", "a", 0.9)],
        "user_key string, goods_id string, score double")
    train = spark.createDataFrame([("u1", "b"), ("u2", "z")], "user_key string, goods_id string")
    test = spark.createDataFrame([("u1", g) for g in REL] + [("u2", "x"), ("u3", "a"),
                                                             (None, "a")],
                                 "user_key string, goods_id string")
    got = ev.evaluate_modes(recs, train, test, k=4, catalog_size=10)["all"]
    u1 = [f(REC, REL, 4) for f in (d.precision_at_k, d.recall_at_k,
                                   d.average_precision_at_k, d.ndcg_at_k)]
    u2 = [f(["x", "y"], {"x"}, 4) for f in (d.precision_at_k, d.recall_at_k,
                                            d.average_precision_at_k, d.ndcg_at_k)]
    expected = [(a + b) / 2 for a, b in zip(u1, u2)]  # u3 was not in training: not counted
    assert [got[m] for m in ("precision", "recall", "map", "ndcg")] == pytest.approx(expected)
    assert got["users"] == 2
    assert got["coverage"] == pytest.approx(6 / 10)  # a b c d x y

    new = ev.evaluate_modes(recs, train, test, k=4, catalog_size=10)["new"]
    # u1 already bought b: relevant {d, e}, recommended [a, c, d]; u2 unchanged.
    u1_new = [f(["a", "c", "d"], {"d", "e"}, 4) for f in (
        d.precision_at_k, d.recall_at_k, d.average_precision_at_k, d.ndcg_at_k)]
    assert [new[m] for m in ("precision", "recall", "map", "ndcg")] == pytest.approx(
        [(a + b) / 2 for a, b in zip(u1_new, u2)])
    with pytest.raises(ValueError, match="mode must be one of"):
        ev.evaluate_many({"m": recs}, train, test, k=4, catalog_size=10, modes=("old",))


@pytest.mark.spark
def test_many_models_in_one_pass_match_each_alone(spark):
    recs = spark.createDataFrame(
        [("u1", g, 1.0 - i / 10) for i, g in enumerate(REC)] + [("u2", "x", 0.9), ("u2", "y", 0.8)],
        "user_key string, goods_id string, score double")
    other = spark.createDataFrame([("u1", "e", 1.0), ("u1", "b", 0.5), ("u2", "y", 0.7)],
                                  "user_key string, goods_id string, score double")
    train = spark.createDataFrame([("u1", "b"), ("u2", "z")], "user_key string, goods_id string")
    test = spark.createDataFrame([("u1", g) for g in REL] + [("u2", "x")],
                                 "user_key string, goods_id string")
    both = ev.evaluate_many({"a": recs, "b": other}, train, test, k=3, catalog_size=10)
    for name, df in (("a", recs), ("b", other)):
        alone = ev.evaluate_modes(df, train, test, k=3, catalog_size=10)
        for mode in ev.MODES:
            assert both[name][mode] == pytest.approx(alone[mode])
    # u1 "new": relevant {d, e}; model b recommends e (b was bought before): AP 1/2 for u1;
    # u2 gets y (not relevant): 0. Mean over the two shoppers.
    assert both["b"]["new"]["map"] == pytest.approx((1 / 2 + 0) / 2)
    assert both["b"]["all"]["users"] == 2 and both["b"]["new"]["coverage"] == pytest.approx(0.2)


def _expected(recs, train, test, k, catalog_size):
    """metrics@k by the pure definitions, shopper by shopper, for one model's rows."""
    bought, tested = {}, {}
    for u, g in train:
        bought.setdefault(u, set()).add(g)
    for u, g in test:
        if u is not None and u in bought:
            tested.setdefault(u, set()).add(g)
    lists = {}
    for u, g, s in recs:
        lists.setdefault(u, []).append((-s, g))
    out = {}
    for mode in ev.MODES:
        rows, covered = [], set()
        for u, relevant in tested.items():
            if mode == "new":
                relevant = relevant - bought[u]
            if not relevant:
                continue
            ranked = [g for _, g in sorted(lists.get(u, []))
                      if mode == "all" or g not in bought[u]][:k]
            covered.update(ranked)
            rows.append([f(ranked, relevant, k) for f in (
                d.precision_at_k, d.recall_at_k, d.average_precision_at_k, d.ndcg_at_k)])
        means = [sum(col) / len(rows) for col in zip(*rows)] if rows else [0.0] * 4
        out[mode] = dict(zip(("precision", "recall", "map", "ndcg"), means),
                         users=len(rows), coverage=len(covered) / catalog_size)
    return out


@pytest.mark.spark
def test_evaluator_matches_the_definitions_on_a_random_population(spark):
    """Many shoppers, three models, tied scores, shoppers without recommendations and
    recommendations for shoppers outside the test: every figure as the definitions say."""
    import random

    rnd = random.Random(7)
    goods = [f"g{i:02d}" for i in range(30)]
    users = [f"u{i:02d}" for i in range(60)]
    train = {(u, g) for u in users[:50] for g in rnd.sample(goods, rnd.randint(1, 6))}
    test = {(u, g) for u in users[10:] for g in rnd.sample(goods, rnd.randint(1, 5))}
    test |= {(None, "g00")}
    models = {}
    for name in ("a", "b", "c"):
        models[name] = [(u, g, float(rnd.randint(0, 4)))  # few values: many ties
                        for u in rnd.sample(users, 45) for g in rnd.sample(goods, 12)]
    k = 5
    got = ev.evaluate_many(
        {n: spark.createDataFrame(r, "user_key string, goods_id string, score double")
         for n, r in models.items()},
        spark.createDataFrame(sorted(train), "user_key string, goods_id string"),
        spark.createDataFrame(sorted(test, key=str), "user_key string, goods_id string"),
        k=k, catalog_size=len(goods))
    for name, rows in models.items():
        want = _expected(rows, train, test, k, len(goods))
        for mode in ev.MODES:
            assert got[name][mode] == pytest.approx(want[mode]), (name, mode)
    assert got["a"]["new"]["users"] < got["a"]["all"]["users"] == 40


def _keys_in_blocks(spark, n_blocks: int, count: int) -> list[str]:
    """`count` user keys, each in a different evaluation block of `n_blocks`."""
    from pyspark.sql import functions as F

    found: dict[int, str] = {}
    for i in range(1000):
        key = f"u{i}"
        block = spark.range(1).select(F.pmod(F.xxhash64(F.lit(key)), F.lit(n_blocks))).first()[0]
        found.setdefault(block, key)
        if len(found) == count:
            return [found[b] for b in sorted(found)]
    raise AssertionError("no keys found")


@pytest.mark.spark
def test_a_block_with_only_new_shoppers_returns_typed_rows(spark):
    # A small shop's holdout: one block's test buyers all bought nothing before the cut, so
    # its pandas task has no shopper to measure. It used to return an untyped empty frame,
    # which Arrow refused ("Cannot convert pyarrow.lib.ChunkedArray to pyarrow.lib.Array").
    old, new = _keys_in_blocks(spark, 2, 2)  # the session has 2 cores and 2 partitions
    train = spark.createDataFrame([(old, "a")], "user_key string, goods_id string")
    test = spark.createDataFrame([(old, "b"), (new, "c")], "user_key string, goods_id string")
    recs = spark.createDataFrame([(old, "b", 1.0), (new, "c", 1.0)],
                                 "user_key string, goods_id string, score double")
    got = ev.evaluate_many({"m": recs}, train, test, k=2, catalog_size=3)
    assert got["m"]["all"]["users"] == 1 and got["m"]["all"]["precision"] == 0.5
    assert got["m"]["new"]["map"] == 1.0
