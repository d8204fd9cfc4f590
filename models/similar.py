"""Similar items: each goods' nearest neighbours among the ALS item factors, by cosine.

What the product page shows (`GET /products/<id>/similar`). ALS puts goods bought by the
same shoppers close together in factor space; the cosine compares directions only, so a
best seller, whose factor vector is long, does not become everybody's neighbour.

Every pair is scored exactly, yet Spark never joins items with items. Items are cut into
blocks of `block_size` consecutive ids, the factor table (items x rank floats: small next
to the purchases) is replicated once per block, and one pandas task per block multiplies
its own items by all normalized factors with numpy and keeps the top k of each row. A task
holds all factors plus a block_size x items float64 score matrix (512 x 50 000 goods is
200 MB): lower block_size for a larger catalogue. Nothing is collected to the driver.
"""
from __future__ import annotations

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from models._pandas import returns

SIMILAR_SCHEMA = StructType([StructField("goods_id", StringType()),
                             StructField("similar_id", StringType()),
                             StructField("score", DoubleType()),
                             StructField("rank", IntegerType())])


def similar_items(model: ALSModel, items: DataFrame, k: int = 20,
                  block_size: int = 512) -> DataFrame:
    """(goods_id, similar_id, score, rank): for every goods with ALS factors, the k other
    goods with the highest cosine of factors, rank 1 the most similar, ties to the smaller
    similar_id. `items` is the (key, id) mapping the model was trained with."""
    if k < 1 or block_size < 1:
        raise ValueError(f"k and block_size must be at least 1, not {k} and {block_size}")
    factors = (model.itemFactors
               .join(items.select("key", "id"), "id")  # goods without factors drop out here
               .select("key", "features", F.expr(f"id div {int(block_size)}").alias("home")))
    blocks = factors.select(F.col("home").alias("block")).distinct()
    # blocks x items rows: each block's group holds its own items (home == block) and the
    # candidates, all of them.
    replicated = factors.crossJoin(F.broadcast(blocks))
    return replicated.groupBy("block").applyInPandas(_block_top_k(k), SIMILAR_SCHEMA)


def _block_top_k(k: int):
    @returns(SIMILAR_SCHEMA)
    def compute(group):
        import pandas as pd

        # Columns in key order, so that a lower column index is a smaller similar_id.
        group = group.sort_values("key", ignore_index=True)
        keys = group["key"].to_numpy()
        vectors = _normalized(np.stack(group["features"].to_numpy()))
        queries = np.flatnonzero((group["home"] == group["block"]).to_numpy())
        n = min(k, len(group) - 1)
        if n < 1 or len(queries) == 0:
            return None
        scores = np.round(vectors[queries] @ vectors.T, 9)  # as models/hybrid.py rounds
        rows, cols, values, ranks = nearest(scores, queries, n)
        return pd.DataFrame({"goods_id": keys[rows], "similar_id": keys[cols],
                             "score": values, "rank": ranks})
    return compute


def nearest(scores: np.ndarray, queries: np.ndarray, n: int, positive: bool = False):
    """The blocked top-k of every neighbour table (ALS factors here, names in
    models/content.py, buyers in models/hybrid.py): row i of `scores` scores goods
    `queries[i]` against every goods. Each one's n best others, best first, ties to the
    lower column (`best_columns`); `positive`: only scores above 0.
    (query goods, neighbour goods, scores, ranks from 1), flat."""
    scores[np.arange(len(queries)), queries] = -np.inf  # never one's own neighbour
    best = best_columns(scores, n)
    values = np.take_along_axis(scores, best, axis=1)
    keep = values > 0 if positive else np.isfinite(values)
    rows = np.repeat(queries, n).reshape(len(queries), n)
    return rows[keep], best[keep], values[keep], np.cumsum(keep, axis=1)[keep].astype(np.int32)


def _normalized(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row stays zero (cosine 0 with all, not NaN)."""
    matrix = matrix.astype(np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def best_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Per row, the columns of the n highest scores, best first, ties to the lower column.

    argpartition alone would break a tie at the n-th place arbitrarily; here every score
    above the n-th is kept and the tied ones fill the remaining places from the left."""
    nth = -np.partition(-scores, n - 1, axis=1)[:, n - 1:n]
    above = scores > nth
    tied = scores == nth
    room = n - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    cols = np.nonzero(chosen)[1].reshape(len(scores), n)  # ascending within each row
    order = np.argsort(-np.take_along_axis(scores, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)
