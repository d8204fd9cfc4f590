import random
from types import SimpleNamespace

import numpy as np
import pytest

from models import als, ids, similar

pytestmark = pytest.mark.spark

KEYS = {i: f"g{i}" for i in range(20)}  # "g10" < "g2": key order is not id order


def fit(spark, rows):
    ratings = spark.createDataFrame(rows, "user int, item int, strength float")
    return als.train(ratings, als.ALSParams(rank=4, max_iter=10, reg_param=0.01, alpha=5.0))


@pytest.fixture(scope="module")
def checkerboard(spark):
    # Users 0-9 buy items 0-9 ("garden"), users 10-19 items 10-19 ("kitchen"), each skipping
    # one. Items of a cluster get all but the same factors: right for clusters, but their
    # mutual order is float noise.
    return fit(spark, [(u, i, 1.0) for u in range(20) for i in range(20)
                       if (u < 10) == (i < 10) and i % 10 != u % 10])


@pytest.fixture(scope="module")
def model(spark):
    # The same two clusters, each of 15 users buying 5 random goods of theirs: distinct
    # factors, so the exact order is well defined (brute_force checks the gaps).
    rnd = random.Random(3)
    return fit(spark, sorted({(u, (u >= 15) * 10 + i, 1.0) for u in range(30)
                              for i in rnd.sample(range(10), 5)}))


@pytest.fixture(scope="module")
def items(spark):
    # g99 is in the mapping but was never bought: it has no factors.
    return spark.createDataFrame([*KEYS.items(), (99, "g99")], "id int, key string") \
        .select("key", "id")


def neighbours(df) -> dict[str, list]:
    """goods_id -> [(similar_id, score, rank)] in rank order."""
    out: dict[str, list] = {}
    for r in sorted(df.collect(), key=lambda r: (r.goods_id, r.rank)):
        out.setdefault(r.goods_id, []).append((r.similar_id, r.score, r.rank))
    return out


def brute_force(model, k: int) -> dict[str, list]:
    """goods_id -> [(similar_id, score)]: the cosine of every pair, sorted, in numpy."""
    rows = model.itemFactors.collect()
    keys = [KEYS[r.id] for r in rows]
    x = np.array([r.features for r in rows], dtype=float)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    ordered = -np.sort(-sim, axis=1)[:, 1:]  # the largest, 1.0, is oneself
    assert np.diff(ordered, axis=1).max() < -1e-6, "near ties: the order is float noise"
    out = {}
    for i, key in enumerate(keys):
        best = sorted((j for j in range(len(keys)) if j != i),
                      key=lambda j: (-sim[i, j], keys[j]))[:k]
        out[key] = [(keys[j], sim[i, j]) for j in best]
    return out


def test_similar_items_stay_in_their_taste_cluster(checkerboard, items):
    got = neighbours(similar.similar_items(checkerboard, items, k=9))
    assert set(got) == set(KEYS.values())  # g99, without factors, is skipped
    for i, key in KEYS.items():
        cluster = {KEYS[j] for j in range(20) if (j < 10) == (i < 10) and j != i}
        assert {s for s, _, _ in got[key]} == cluster, (key, got[key])


@pytest.fixture(scope="module")
def big_blocks(model, items):
    return neighbours(similar.similar_items(model, items, k=25))


def test_similar_items_equal_brute_force_cosine(model, items):
    k = 8
    got = neighbours(similar.similar_items(model, items, k=k))
    expected = brute_force(model, k)
    assert set(got) == set(expected)
    for key, want in expected.items():
        mine = got[key]
        assert [s for s, _, _ in mine] == [s for s, _ in want], key
        assert [score for _, score, _ in mine] == pytest.approx([s for _, s in want], abs=1e-5)
        assert [r for _, _, r in mine] == list(range(1, k + 1))
        assert key not in {s for s, _, _ in mine}


def test_k_above_the_catalogue_gives_all_the_others(model, big_blocks):
    expected = brute_force(model, 19)
    for key, mine in big_blocks.items():
        assert [(s, r) for s, _, r in mine] == [(s, r) for r, (s, _) in
                                                enumerate(expected[key], 1)]


def test_small_blocks_give_the_same_result(model, items, big_blocks):
    small = neighbours(similar.similar_items(model, items, k=25, block_size=3))  # 7 blocks
    big = big_blocks  # block_size 512: one block
    assert set(small) == set(big) == set(KEYS.values())
    for key in big:
        assert [(s, r) for s, _, r in small[key]] == [(s, r) for s, _, r in big[key]]
        assert [x for _, x, _ in small[key]] == pytest.approx([x for _, x, _ in big[key]])


def test_zero_vectors_score_zero_and_ties_go_to_the_smaller_id(spark):
    vectors = {"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 1.0], "d": [0.0, 0.0],
               "e": [1.0, 1.0]}
    mapping = [("e", 0), ("d", 1), ("c", 2), ("b", 3), ("a", 4), ("f", 5)]  # f: no factors
    factors = spark.createDataFrame([(i, vectors[key]) for key, i in mapping if key in vectors],
                                    "id int, features array<float>")
    stub = SimpleNamespace(itemFactors=factors)
    items = spark.createDataFrame(mapping, ids.MAPPING_SCHEMA)
    got = neighbours(similar.similar_items(stub, items, k=2, block_size=2))
    c45 = pytest.approx(0.5 ** 0.5)
    assert got == {
        "a": [("b", pytest.approx(1.0), 1), ("e", c45, 2)],  # b: same direction, longer
        "b": [("a", pytest.approx(1.0), 1), ("e", c45, 2)],
        "c": [("e", c45, 1), ("a", 0.0, 2)],  # a, b and d tie at 0
        "d": [("a", 0.0, 1), ("b", 0.0, 2)],  # the zero vector: 0 with all, not NaN
        "e": [("a", c45, 1), ("b", c45, 2)],  # a, b and c tie at cos 45°
    }


def test_k_and_block_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        similar.similar_items(None, None, k=0)
    with pytest.raises(ValueError, match="at least 1"):
        similar.similar_items(None, None, block_size=0)
