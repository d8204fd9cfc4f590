import datetime as dt
import random

import numpy as np
import pytest
from pyspark.sql import functions as F

from models import als, hybrid, ids

pytestmark = pytest.mark.spark


def lines_df(spark, rows):
    """rows: (order_id, user_key, goods_id, dt)."""
    return spark.createDataFrame(
        [(o, u, g, 1, dt.date.fromisoformat(d)) for o, u, g, d in rows],
        "order_id string, user_key string, goods_id string, quantity int, dt date")


def brute_force_neighbours(pairs, k):
    users = sorted({u for u, _ in pairs})
    goods = sorted({g for _, g in pairs})
    x = np.zeros((len(users), len(goods)))
    for u, g in pairs:
        x[users.index(u), goods.index(g)] = 1
    co = x.T @ x
    n = x.sum(0)
    sim = co / np.sqrt(np.outer(n, n))
    np.fill_diagonal(sim, 0)
    out = {}
    for i, g in enumerate(goods):
        order = sorted((j for j in range(len(goods)) if sim[i, j] > 0),
                       key=lambda j: -sim[i, j])[:k]
        out[g] = {goods[j]: sim[i, j] for j in order}
    return out


@pytest.mark.parametrize("block_items,query_chunk", [(2, 512), (1000, 512), (1000, 5)])
def test_item_neighbours_equal_brute_force_cosine(spark, monkeypatch, block_items, query_chunk):
    monkeypatch.setattr(hybrid, "QUERY_CHUNK", query_chunk)  # read when the job is built
    rnd = random.Random(7)
    pairs = {(f"u{rnd.randrange(30)}", f"g{rnd.randrange(12)}") for _ in range(150)}
    rows = [(f"o{n}", u, g, "2024-01-01") for n, (u, g) in enumerate(sorted(pairs))]
    rows.append(("guest", None, "g0", "2024-01-01"))  # guests do not count as buyers
    got = hybrid.item_neighbours(lines_df(spark, rows), k=3, block_items=block_items).collect()
    expected = brute_force_neighbours(pairs, 3)
    by_goods = {}
    for r in got:
        by_goods.setdefault(r.goods_id, {})[r.other] = r.sim
    assert set(by_goods) == {g for g, v in expected.items() if v}
    for g, neighbours in by_goods.items():
        assert g not in neighbours
        # ties may pick different members; the similarity values must be the top ones
        assert sorted(neighbours.values(), reverse=True) == pytest.approx(
            sorted(expected[g].values(), reverse=True))
        for other, sim in neighbours.items():
            assert sim == pytest.approx(
                brute_force_neighbours(pairs, 99)[g][other])


def test_hybrid_recommends_repeats_first_and_neighbours_of_them_as_new(spark):
    # Two taste groups; shopper s1 keeps rebuying g1 and has never bought g3, which the
    # other kitchen shoppers buy together with g1 and g2.
    rows = []
    for n in range(8):
        rows += [(f"k{n}a", f"k{n}", "g1", "2024-01-02"), (f"k{n}a", f"k{n}", "g2", "2024-01-02"),
                 (f"k{n}b", f"k{n}", "g3", "2024-01-03")]
        rows += [(f"d{n}a", f"d{n}", "h1", "2024-01-02"), (f"d{n}a", f"d{n}", "h2", "2024-01-03")]
    rows += [(f"s{n}", "s1", "g1", f"2024-01-0{n + 1}") for n in range(3)]
    rows += [("s9", "s1", "g2", "2024-01-03")]
    lines = lines_df(spark, rows).cache()
    users = ids.extend(None, lines.select("user_key"))
    items = ids.extend(None, lines.select("goods_id"))
    params = als.ALSParams(rank=4, max_iter=5, reg_param=0.1, alpha=10.0, strength="count")
    model = als.train(als.ratings(lines, users, items, "count"), params)
    shoppers = spark.createDataFrame([("s1",)], "user_key string")
    blend = hybrid.HybridParams(neighbours=5, candidates=10)
    ranked = hybrid.recommend(lines, model, users, items, dt.date(2024, 1, 3), blend, 5,
                              shoppers=shoppers).orderBy("rank").collect()
    assert [r.goods_id for r in ranked][:2] == ["g1", "g2"]  # bought 3 times, then once
    assert ranked[0].bought and ranked[1].bought
    new = [r.goods_id for r in ranked if not r.bought]
    assert new[0] == "g3"  # the kitchen neighbour, before the other group's goods
    assert max(r.score for r in ranked) <= sum(blend.weights().values())
    # Scoring everyone (the nightly run) gives s1 the same list as scoring s1 alone.
    everyone = hybrid.recommend(lines, model, users, items, dt.date(2024, 1, 3), blend, 5)
    mine = everyone.where("user_key = 's1'").orderBy("rank").collect()
    assert [(r.goods_id, r.bought) for r in mine] == [(r.goods_id, r.bought) for r in ranked]
    assert [r.score for r in mine] == pytest.approx([r.score for r in ranked])
    assert everyone.select("user_key").distinct().count() == 17  # k0-k7, d0-d7, s1


@pytest.fixture(scope="module")
def random_shop(spark):
    """A small random shop with guests, repeat buyers and a long tail, and an ALS on it."""
    rnd = random.Random(3)
    rows = []
    for o in range(600):
        user = f"u{rnd.randrange(80)}" if rnd.random() > 0.05 else None
        day = f"2024-01-{rnd.randrange(1, 29):02d}"
        for g in rnd.sample(range(60), rnd.randrange(1, 6)):
            goods = g if rnd.random() < 0.5 else int(rnd.paretovariate(1.2)) % 60
            rows.append((f"o{o}", user, f"g{goods:02d}", day))
    lines = lines_df(spark, rows).dropDuplicates(["order_id", "goods_id"]).cache()
    users = ids.extend(None, lines.select("user_key")).cache()
    items = ids.extend(None, lines.select("goods_id")).cache()
    model = als.train(als.ratings(lines, users, items, "count"), als.ALSParams(rank=4, max_iter=5))
    return lines, users, items, model


def _lists(rows):
    return {(r.user_key, r.rank): (r.goods_id, r.bought, r.score) for r in rows}


def test_several_blends_in_one_pass_equal_each_alone(spark, random_shop):
    # The holdout and tune measure all their candidates from one pass.
    lines, users, items, model = random_shop
    params = hybrid.HybridParams(neighbours=5, candidates=15, block_items=16)
    asof, k = dt.date(2024, 1, 28), 5
    blends = {"als": {"als": 1.0}, "knn": {"items": 1.0, "rebuy": 0.0},
              "mix": {"repeat": 1.0, "trending": 2.0, "rebuy": 0.5}}
    shoppers = spark.createDataFrame([(f"u{i}",) for i in range(0, 80, 3)], "user_key string")
    got = hybrid.recommend(lines, model, users, items, asof, params, k, blends=blends).cache()
    for name, weights in blends.items():
        alone = _lists(hybrid.recommend(lines, model, users, items, asof, params, k,
                                        shoppers=shoppers, blends={name: weights}).collect())
        mine = _lists(got.where(f"model = '{name}'").where(F.col("user_key").isin(
            [r.user_key for r in shoppers.collect()])).collect())
        assert len(alone) > 50 and set(mine) == set(alone), name
        assert all(mine[key][:2] == alone[key][:2] for key in alone), name
    with pytest.raises(ValueError, match="every weight"):
        hybrid.recommend(lines, model, users, items, asof, params, k, blends={"x": {"als": 0}})


def test_recent_counts_this_week_before_what_sold_weeks_ago(spark):
    # "old" sold in 4 orders three weeks before the night, "new" in 2 orders yesterday:
    # flat counts over 30 days (trending) rank "old" first, a 3-day half-life (recent) "new".
    rows = [(f"o{i}", f"u{i}", "old", "2024-03-10") for i in range(4)]
    rows += [(f"n{i}", f"v{i}", "new", "2024-03-30") for i in range(2)]
    asof = dt.date(2024, 3, 31)
    lines = lines_df(spark, rows)
    params = hybrid.HybridParams()

    def trending(half_life):
        return [(r.goods_id, round(r.score, 4)) for r in hybrid.trending_goods(
            lines, asof, params, half_life).collect()]

    assert trending(0.0) == [("old", 1.0), ("new", 0.5)]
    decayed = trending(3.0)
    assert [g for g, _ in decayed] == ["new", "old"]
    # 2 * 0.5 ** (1/3) against 4 * 0.5 ** (21/3)
    assert decayed[1][1] == pytest.approx(4 * 0.5 ** 7 / (2 * 0.5 ** (1 / 3)), abs=1e-4)
    assert params.trending_half_life == 3.0  # latest_popularity's

    # The night's candidates: recent popularity (trending) and latest popularity (recent).
    users = ids.extend(None, lines.select("user_key"))
    items = ids.extend(None, lines.select("goods_id"))
    model = als.train(als.ratings(lines, users, items, "count"),
                      als.ALSParams(rank=2, max_iter=2))
    firsts = {(r.model, r.goods_id) for r in hybrid.recommend(
        lines, model, users, items, asof, params, 2,
        blends={"latest": {"recent": 1.0}, "recent": {"trending": 1.0}}).where(
            "rank = 1").collect()}
    assert firsts == {("latest", "new"), ("recent", "old")}
