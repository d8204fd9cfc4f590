import math

import pytest

from models import evaluation as ev

REC, REL = ["a", "b", "c", "d"], {"b", "d", "e"}


def test_metrics_against_hand_computed_values():
    assert ev.precision_at_k(REC, REL, 4) == 0.5
    assert ev.recall_at_k(REC, REL, 4) == pytest.approx(2 / 3)
    assert ev.average_precision_at_k(REC, REL, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert ev.ndcg_at_k(REC, REL, 4) == pytest.approx(dcg / (1 + 1 / math.log2(3) + 0.5))
    assert ev.precision_at_k(REC, REL, 2) == 0.5 and ev.recall_at_k(REC, set(), 2) == 0.0
    assert ev.average_precision_at_k(["b", "d"], {"b", "d"}, 2) == 1.0
    assert ev.ndcg_at_k(["x"], {"b"}, 1) == 0.0


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
    got = ev.evaluate(recs, train, test, k=4, mode="all", catalog_size=10)
    u1 = [f(REC, REL, 4) for f in (ev.precision_at_k, ev.recall_at_k,
                                   ev.average_precision_at_k, ev.ndcg_at_k)]
    u2 = [f(["x", "y"], {"x"}, 4) for f in (ev.precision_at_k, ev.recall_at_k,
                                            ev.average_precision_at_k, ev.ndcg_at_k)]
    expected = [(a + b) / 2 for a, b in zip(u1, u2)]  # u3 was not in training: not counted
    assert [got[m] for m in ("precision", "recall", "map", "ndcg")] == pytest.approx(expected)
    assert got["users"] == 2
    assert got["coverage"] == pytest.approx(6 / 10)  # a b c d x y

    new = ev.evaluate(recs, train, test, k=4, mode="new", catalog_size=10)
    # u1 already bought b: relevant {d, e}, recommended [a, c, d]; u2 unchanged.
    u1_new = [f(["a", "c", "d"], {"d", "e"}, 4) for f in (
        ev.precision_at_k, ev.recall_at_k, ev.average_precision_at_k, ev.ndcg_at_k)]
    assert [new[m] for m in ("precision", "recall", "map", "ndcg")] == pytest.approx(
        [(a + b) / 2 for a, b in zip(u1_new, u2)])
    with pytest.raises(ValueError, match="mode must be one of"):
        ev.evaluate(recs, train, test, k=4, mode="old", catalog_size=10)


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
        for mode in ev.MODES:
            alone = ev.evaluate(df, train, test, k=3, mode=mode, catalog_size=10)
            assert both[name][mode] == pytest.approx(alone)
    # u1 "new": relevant {d, e}; model b recommends e (b was bought before): AP 1/2 for u1;
    # u2 gets y (not relevant): 0. Mean over the two shoppers.
    assert both["b"]["new"]["map"] == pytest.approx((1 / 2 + 0) / 2)
    assert both["b"]["all"]["users"] == 2 and both["b"]["new"]["coverage"] == pytest.approx(0.2)
