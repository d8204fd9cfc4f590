import pytest

from models import als, fpgrowth, ids

pytestmark = pytest.mark.spark


def test_fpgrowth_finds_the_planted_bundle(spark):
    # Six baskets, as in Spark's test_fpm: {a, b} together in 4, c alone or with a.
    rows = [("1", ["a", "b"]), ("2", ["a", "b", "c"]), ("3", ["a", "b"]), ("4", ["a", "b"]),
            ("5", ["c"]), ("6", ["a", "c"])]
    baskets = spark.createDataFrame(rows, "order_id string, items array<string>")
    params = fpgrowth.FPGrowthParams(min_support=0.5, min_confidence=0.6)
    model = fpgrowth.train(baskets, params.support_for(6), params)
    rules = {(tuple(r.antecedent), tuple(r.consequent)): r for r in fpgrowth.rules(model).collect()}
    assert set(rules) == {(("a",), ("b",)), (("b",), ("a",))}
    a_b = rules[(("a",), ("b",))]
    assert a_b.confidence == pytest.approx(4 / 5)  # a in 5 baskets, with b in 4
    assert a_b.support == pytest.approx(4 / 6)
    assert a_b.lift == pytest.approx((4 / 5) / (4 / 6))


def test_fpgrowth_mines_in_as_many_groups_as_the_session_has_cores(spark):
    baskets = spark.createDataFrame([("1", ["a", "b"]), ("2", ["a", "b"])],
                                    "order_id string, items array<string>")
    for params, groups in ((fpgrowth.FPGrowthParams(), spark.sparkContext.defaultParallelism),
                           (fpgrowth.FPGrowthParams(partitions=5), 5)):
        model = fpgrowth.train(baskets, 0.5, params)
        try:
            assert model.getOrDefault("numPartitions") == groups
        finally:
            model.freqItemsets.unpersist()


def test_fpgrowth_default_support_needs_fifty_baskets():
    p = fpgrowth.FPGrowthParams()
    assert p.support_for(50_000) == pytest.approx(0.001)
    assert p.support_for(2_000) == pytest.approx(0.025)
    assert p.support_for(10) == 0.05
    assert fpgrowth.FPGrowthParams(min_support=0.3).support_for(10) == 0.3


def test_fpgrowth_leaves_out_bulk_baskets(spark):
    bulk = [str(g) for g in range(30)]
    df = spark.createDataFrame([("o1", ["a", "b"]), ("o2", bulk), ("o3", ["a"])],
                               "order_id string, items array<string>")
    kept = fpgrowth.minable(df, fpgrowth.FPGrowthParams(max_basket_items=10))
    assert sorted(r.order_id for r in kept.collect()) == ["o1", "o3"]
    assert fpgrowth.minable(df, fpgrowth.FPGrowthParams(max_basket_items=0)).count() == 3


def test_fpgrowth_raises_support_when_itemsets_explode(spark):
    # 12 goods always bought together in 4 of 12 baskets: 4,095 itemsets at minSupport
    # 0.2. With at most 100 itemsets allowed it is doubled to 0.4, which leaves only the
    # goods of the 8 baskets of {x, y}.
    dense = [str(g) for g in range(12)]
    rows = [(f"d{i}", dense) for i in range(4)] + [(f"p{i}", ["x", "y"]) for i in range(8)]
    df = spark.createDataFrame(rows, "order_id string, items array<string>")
    params = fpgrowth.FPGrowthParams(max_itemsets=100)
    model = fpgrowth.train(df, 0.2, params)
    try:
        assert model.getMinSupport() == pytest.approx(0.4)
        assert {tuple(sorted(r["items"])) for r in model.freqItemsets.collect()} == {
            ("x",), ("y",), ("x", "y")}
    finally:
        model.freqItemsets.unpersist()


def test_als_ranks_a_shoppers_taste_cluster_above_the_others(spark):
    # Checkerboard: users 0-9 buy items 0-9 ("garden"), users 10-19 items 10-19 ("kitchen").
    # Each user skips one item of their cluster; ALS must recommend it before anything else.
    rows = [(u, i, 1.0) for u in range(20) for i in range(20)
            if (u < 10) == (i < 10) and i % 10 != u % 10]
    ratings = spark.createDataFrame(rows, "user int, item int, strength float")
    model = als.train(ratings, als.ALSParams(rank=4, max_iter=15, reg_param=0.01, alpha=5.0))
    users = spark.createDataFrame([(f"u{u}", u) for u in range(20)], ids.MAPPING_SCHEMA)
    items = spark.createDataFrame([(f"g{i}", i) for i in range(20)], ids.MAPPING_SCHEMA)
    recs = als.recommend_users(model, ratings.select("user").distinct(), 20, users,
                               items).collect()
    for u in (0, 3, 12, 17):
        mine = sorted((r for r in recs if r.user_key == f"u{u}"), key=lambda r: r.rank)
        ranked = [int(r.goods_id[1:]) for r in mine]
        cluster = set(range(10)) if u < 10 else set(range(10, 20))
        assert set(ranked[:10]) == cluster, ranked  # own cluster first
        assert [r.rank for r in mine] == list(range(1, 21))


def test_strength_transforms(spark):
    lines = spark.createDataFrame(
        [("o1", "u", "g", 3), ("o2", "u", "g", 1), ("o3", None, "g", 5)],
        "order_id string, user_key string, goods_id string, quantity int")
    got = {s: als.interactions(lines, s).first().strength for s in als.STRENGTHS}
    assert got == pytest.approx({"count": 2.0, "quantity": 4.0, "log": 1.6094379,
                                 "binary": 1.0})
    with pytest.raises(ValueError, match="strength must be one of"):
        als.ALSParams(strength="rmse")


def test_id_mapping_is_stable_when_new_shoppers_appear(spark):
    first = ids.extend(None, spark.createDataFrame([("b",), ("a",)], "k string"))
    assert sorted(map(tuple, first.collect())) == [("a", 0), ("b", 1)]
    second = ids.extend(first, spark.createDataFrame([("c",), ("a",), ("0",)], "k string"))
    assert sorted(map(tuple, second.collect())) == [("0", 2), ("a", 0), ("b", 1), ("c", 3)]


def test_id_mapping_numbers_keys_in_order_across_partitions(spark):
    keys = spark.range(1000).selectExpr("format_string('k%04d', id) AS k").repartition(7)
    # Adaptive execution would coalesce the sort's output into one partition.
    coalesce = "spark.sql.adaptive.coalescePartitions.enabled"
    before = spark.conf.get(coalesce)
    spark.conf.set(coalesce, "false")
    try:
        first = ids.extend(None, keys).cache()
        assert first.rdd.getNumPartitions() > 2  # the previous (empty) mapping's and the sort's
        got = sorted(map(tuple, first.collect()), key=lambda r: r[1])
    finally:
        spark.conf.set(coalesce, before)
    assert got == [(f"k{i:04d}", i) for i in range(1000)]
    more = spark.range(990, 1010).selectExpr("format_string('k%04d', id) AS k")
    second = dict(map(tuple, ids.extend(first, more).collect()))
    assert len(second) == 1010 and second["k0999"] == 999
    assert [second[f"k{i:04d}"] for i in range(1000, 1010)] == list(range(1000, 1010))
    first.unpersist()


def test_id_mapping_refuses_to_pass_int32(spark):
    full = spark.createDataFrame([("a", ids.MAX_ID - 1)], ids.MAPPING_SCHEMA)
    last = ids.extend(full, spark.createDataFrame([("a",), ("b",)], "k string"))
    assert sorted(map(tuple, last.collect())) == [("a", ids.MAX_ID - 1), ("b", ids.MAX_ID)]
    with pytest.raises(OverflowError, match="2 new keys after id 2147483646"):
        ids.extend(full, spark.createDataFrame([("b",), ("c",), ("a",)], "k string"))


def test_fpgrowth_params_come_from_the_config():
    from core import config

    s = config.load(env={"SHOPRECS_FPGROWTH_MIN_SUPPORT": "0.02",
                         "SHOPRECS_FPGROWTH_MIN_CONFIDENCE": "0.3",
                         "SHOPRECS_FPGROWTH_MAX_BASKET_ITEMS": "40"})
    p = fpgrowth.FPGrowthParams.from_settings(s.fpgrowth)
    assert (p.min_support, p.min_confidence, p.max_basket_items) == (0.02, 0.3, 40)
    assert p.support_for(10) == 0.02
    derived = fpgrowth.FPGrowthParams.from_settings(config.Settings().fpgrowth)
    assert derived.min_support is None and derived.support_for(2_000) == pytest.approx(0.025)
