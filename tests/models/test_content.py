import math

import pytest

from models import content

pytestmark = pytest.mark.spark

CATALOG = [("1", "Red Mug"), ("2", "Blue Mug"), ("3", "Red Mug Set"), ("4", "Green Lantern"),
           ("5", "LANTERN, large"), ("6", "12345"), ("7", None), ("8", "Tea Towel")]


def brute_force(k: int) -> dict[str, list[tuple[str, float]]]:
    """The module's definition, pair by pair: cosine of binary-tf, smoothed-idf vectors."""
    docs = {g: set(content_words(n)) for g, n in CATALOG if n and content_words(n)}
    df = {w: sum(w in ws for ws in docs.values()) for ws in docs.values() for w in ws}
    idf = {w: math.log((1 + len(docs)) / (1 + d)) + 1 for w, d in df.items()}

    def cos(a, b):
        dot = sum(idf[w] ** 2 for w in docs[a] & docs[b])
        return dot / math.sqrt(sum(idf[w] ** 2 for w in docs[a]) *
                               sum(idf[w] ** 2 for w in docs[b]))
    out = {}
    for a in docs:
        near = sorted(((cos(a, b), b) for b in docs if b != a and cos(a, b) > 0),
                      key=lambda x: (-x[0], x[1]))[:k]
        if near:
            out[a] = [(b, s) for s, b in near]
    return out


def content_words(name: str) -> list[str]:
    import re
    return [w for w in re.split(r"[^\w]+", name.lower()) if len(w) >= 2 and not w.isdigit()]


def test_name_neighbours_are_the_cosine_of_tf_idf_names(spark):
    catalog = spark.createDataFrame(CATALOG, "goods_id string, name string")
    got = {}
    for r in content.name_neighbours(catalog, k=2, block_size=3).collect():
        got.setdefault(r.goods_id, []).append((r.rank, r.similar_id, r.score))
    want = brute_force(2)
    assert set(got) == set(want) == {"1", "2", "3", "4", "5"}  # no shared word: none
    for goods, near in want.items():
        ranked = sorted(got[goods])
        assert [r for r, _, _ in ranked] == list(range(1, len(near) + 1))
        assert [(g, pytest.approx(s)) for _, g, s in ranked] == near, goods
    assert got["1"][0][1] == "3" and got["4"][0][1] == "5"  # "Red Mug Set", "LANTERN, large"
