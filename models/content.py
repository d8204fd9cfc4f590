"""Goods with similar names: neighbours for a product nobody has bought yet.

ALS knows a goods only once shoppers bought it, so a product listed today has no similar
goods and no basket answer tonight. Its name does: "Vintage Red Mug" is near "Vintage Blue
Mug" and "Red Mug Set". Each goods' name becomes a TF-IDF vector over its words (binary
term frequency, smoothed idf = ln((1 + goods) / (1 + goods with the word)) + 1, unit
length), and its neighbours are the goods with the highest cosine, every pair scored
exactly. As in models/similar.py items are cut into blocks, every block's task receives
all the vectors (words x goods: small next to the purchases) and multiplies its own goods
by them with scipy, keeping the top k; nothing is collected to the driver.
"""
from __future__ import annotations

import math

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from models._pandas import returns
from models.similar import SIMILAR_SCHEMA, nearest

WORD = r"[^\p{L}\p{N}]+"  # names split on anything but letters and digits
_CHUNK = 256  # query goods per dense product (memory bound: chunk x goods floats)


def words(catalog: DataFrame) -> DataFrame:
    """(goods_id, word): each goods' distinct words of two or more characters, lower case,
    at least one of them a letter (so a goods number alone matches nothing)."""
    return (catalog.where(F.col("name").isNotNull())
            .select("goods_id", F.explode(F.split(F.lower("name"), WORD)).alias("word"))
            .where((F.length("word") >= 2) & F.col("word").rlike(r"\p{L}")).distinct())


def name_neighbours(catalog: DataFrame, k: int = 20, block_size: int = 1024) -> DataFrame:
    """(goods_id, similar_id, score, rank): for every named goods of `catalog` (goods_id,
    name), the k goods with the most similar names, rank 1 the nearest, ties to the smaller
    similar_id; goods sharing no word are never neighbours."""
    pairs = words(catalog)
    n_goods = pairs.select("goods_id").distinct().count()
    idf = pairs.groupBy("word").agg(
        (F.log(F.lit(1.0 + n_goods) / (1 + F.count("*"))) + 1).alias("idf"))
    weighted = pairs.join(idf, "word").select("goods_id", "word", "idf")
    blocks = max(1, math.ceil(n_goods / block_size))
    home = F.pmod(F.xxhash64("goods_id"), F.lit(blocks)).cast("int")
    replicated = weighted.withColumn("home", home).crossJoin(
        F.broadcast(weighted.sparkSession.range(blocks).select(
            F.col("id").cast("int").alias("block"))))
    return replicated.groupBy("block").applyInPandas(_block_top_k(k), SIMILAR_SCHEMA)


def _block_top_k(k: int):
    @returns(SIMILAR_SCHEMA)
    def compute(group):
        import pandas as pd
        import scipy.sparse as sp

        goods, gi = np.unique(group["goods_id"].to_numpy().astype(str), return_inverse=True)
        vocab, wi = np.unique(group["word"].to_numpy().astype(str), return_inverse=True)
        x = sp.csr_matrix((group["idf"].to_numpy(float), (gi, wi)),
                          shape=(len(goods), len(vocab)))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
        x = sp.diags(1 / np.where(norms > 0, norms, 1)) @ x
        home = np.zeros(len(goods), bool)
        home[gi] = group["home"].to_numpy() == group["block"].iat[0]
        queries = np.flatnonzero(home)
        n = min(k, len(goods) - 1)
        if n < 1 or len(queries) == 0:
            return None
        out = []
        xt = x.T.tocsc()
        for start in range(0, len(queries), _CHUNK):
            query = queries[start:start + _CHUNK]
            rows, cols, values, ranks = nearest((x[query] @ xt).toarray(), query, n,
                                                positive=True)
            out.append(pd.DataFrame({"goods_id": goods[rows], "similar_id": goods[cols],
                                     "score": values, "rank": ranks}))
        return pd.concat(out, ignore_index=True)
    return compute
