"""What the pipeline publishes: ALS blended with item-kNN, trending goods and repeat purchases.

Why a blend. On retail data like UCI Online Retail no single model wins both questions a
shop asks (bench/RESULTS.md has the figures):

* "what will this shopper buy next?" is dominated by what they already buy: the shopper's
  own purchase counts (repeat) beat every collaborative model at MAP@10 on all purchases;
* "what new goods will they like?" is won by item-to-item neighbours (kNN on shared
  buyers), ALS adds what neighbours miss, and what sells this month (trending) adds the
  season: Online Retail ramps up its Christmas goods from August.

So a shopper's score for a goods is

    w_repeat   * repeat    log1p(orders of this goods by the shopper)
  + w_als      * als       the ALS prediction (top `candidates`)
  + w_items    * items     sum over the shopper's goods j of profile(j) * cosine(j, goods),
                           profile(j) = log1p(sum over orders of exp(-age / decay_days)),
                           over each goods' `neighbours` nearest neighbours
  + w_trending * trending  orders of this goods in the last `trending_days`

each component divided by its maximum for the shopper (trending: overall), so weights
compare like with like. The weights were tuned on a validation window (`shoprecs tune`).
Items a shopper already bought are flagged (`bought`), and the published list holds the
best `top_k` of all goods and the best `top_k` of goods new to the shopper, so the service
can exclude what was bought without a second model: the repeat term then drops out and the
ranking of new goods is the blend of the other three.

Everything is computed in Spark. The item neighbours come from a blocked sparse product:
items are split into blocks, each block's task receives the full baskets of the shoppers
who bought any of its items, and computes the block's rows of the co-occurrence matrix
with scipy, keeping the top neighbours. No shopper pair join, nothing collected.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from models import als

COMPONENTS = ("repeat", "als", "items", "trending")


@dataclass(frozen=True)
class HybridParams:
    w_repeat: float = 2.0
    w_als: float = 0.5
    w_items: float = 0.5
    w_trending: float = 0.25
    neighbours: int = 20  # item-kNN neighbours per goods
    decay_days: float = 90.0  # age scale of a purchase in the kNN profile
    trending_days: int = 30
    candidates: int = 100  # per shopper, from ALS, from item-kNN and from trending
    block_items: int = 512  # goods per item-kNN task

    def weights(self) -> dict[str, float]:
        return {"repeat": self.w_repeat, "als": self.w_als, "items": self.w_items,
                "trending": self.w_trending}

    def as_dict(self) -> dict:
        return asdict(self)


NEIGHBOUR_SCHEMA = "goods_id string, other string, sim double"


def _block_neighbours(k: int):
    def compute(pdf):
        import pandas as pd
        import scipy.sparse as sp

        block = pdf["block"].iat[0]
        goods, gi = np.unique(pdf["goods_id"].to_numpy(), return_inverse=True)
        _, ui = np.unique(pdf["user_key"].to_numpy(), return_inverse=True)
        x = sp.csr_matrix((np.ones(len(pdf), np.float32), (ui, gi)),
                          shape=(ui.max() + 1, len(goods)))
        x.data[:] = 1.0  # a (shopper, goods) pair counts once
        buyers = np.zeros(len(goods))
        buyers[gi] = pdf["n"].to_numpy()
        home = np.zeros(len(goods), bool)
        home[gi] = pdf["item_block"].to_numpy() == block
        query = np.flatnonzero(home)
        co = (x[:, query].T @ x).toarray()  # query goods x local goods, shared buyers
        sim = co / np.sqrt(np.outer(buyers[query], buyers))
        sim[np.arange(len(query)), query] = 0.0  # never your own neighbour
        kk = min(k, sim.shape[1] - 1)
        if kk <= 0:
            return pd.DataFrame({"goods_id": [], "other": [], "sim": []})
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(sim, top, 1)
        keep = vals > 0
        rows = np.repeat(np.arange(len(query)), kk)[keep.ravel()]
        return pd.DataFrame({"goods_id": goods[query[rows]], "other": goods[top[keep]],
                             "sim": vals[keep].astype(float)})
    return compute


def item_neighbours(lines: DataFrame, k: int = 20, block_items: int = 512) -> DataFrame:
    """(goods_id, other, sim): each goods' k nearest goods by cosine of their buyer sets."""
    pairs = bought_pairs(lines)
    buyers = pairs.groupBy("goods_id").agg(F.count("*").alias("n"))
    n_goods = buyers.count()
    blocks = max(1, math.ceil(n_goods / block_items))
    tagged = pairs.join(buyers, "goods_id").withColumn(
        "item_block", F.pmod(F.xxhash64("goods_id"), F.lit(blocks)))
    touched = tagged.select("user_key", F.col("item_block").alias("block")).distinct()
    rows = touched.join(tagged, "user_key")
    return rows.groupBy("block").applyInPandas(_block_neighbours(k), NEIGHBOUR_SCHEMA)


def bought_pairs(lines: DataFrame) -> DataFrame:
    """(user_key, goods_id): who bought what, once."""
    return lines.where(F.col("user_key").isNotNull()).select("user_key", "goods_id").distinct()


def _per_user_max(scores: DataFrame) -> DataFrame:
    peak = F.max("score").over(Window.partitionBy("user_key"))
    return scores.withColumn("score", F.when(peak > 0, F.greatest(F.col("score"), F.lit(0.0))
                                             / peak).otherwise(F.lit(0.0)))


def _top_per_user(scores: DataFrame, n: int) -> DataFrame:
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "goods_id")
    return scores.withColumn("_r", F.row_number().over(order)).where(F.col("_r") <= n).drop("_r")


def components(lines: DataFrame, model: ALSModel, users: DataFrame, items: DataFrame,
               shoppers: DataFrame | None, asof: dt.date, params: HybridParams,
               neighbours: DataFrame | None = None) -> dict[str, DataFrame]:
    """Each component's (user_key, goods_id, score), normalized, for the `shoppers`
    (None: every shopper of `lines`, without the joins that pick a subset).

    `neighbours` (from item_neighbours) can be passed in when scoring several ALS models
    on the same lines."""
    known = lines.where(F.col("user_key").isNotNull())
    if shoppers is not None:
        shoppers = shoppers.select("user_key").distinct()
        known = known.join(shoppers, "user_key")
    age = F.datediff(F.lit(asof.isoformat()).cast("date"), F.col("dt").cast("date"))
    per_order = known.select("user_key", "goods_id", "order_id", age.alias("age")).distinct()
    # One aggregation for both per-pair components: orders of the goods (repeat) and their
    # recency-weighted sum (the kNN profile).
    pair = per_order.groupBy("user_key", "goods_id").agg(
        F.log1p(F.count("*").cast("double")).alias("score"),
        F.log1p(F.sum(F.exp(-F.col("age") / F.lit(params.decay_days)))).alias("weight"))
    repeat = pair.select("user_key", "goods_id", "score")
    profile = pair.select("user_key", "goods_id", "weight")

    if neighbours is None:
        neighbours = item_neighbours(lines, params.neighbours, params.block_items)
    knn = (profile.join(neighbours, "goods_id")
           .groupBy("user_key", F.col("other").alias("goods_id"))
           .agg(F.sum(F.col("weight") * F.col("sim")).alias("score")))

    if shoppers is None:  # users without ALS factors get no recommendations from it
        subset = users.select(F.col("id").alias("user"))
        shoppers = known.select("user_key").distinct()
    else:
        subset = shoppers.join(users.withColumnRenamed("key", "user_key"), "user_key") \
            .select(F.col("id").alias("user")).distinct()
    als_recs = als.recommend_users(model, subset, params.candidates, users, items) \
        .select("user_key", "goods_id", "score")

    since = (asof - dt.timedelta(days=params.trending_days - 1)).isoformat()
    recent = lines.where(F.col("dt").cast("string") >= since)
    trend = (recent.groupBy("goods_id").agg(F.countDistinct("order_id").alias("orders"))
             .orderBy(F.desc("orders"), "goods_id").limit(params.candidates))
    peak = F.max("orders").over(Window.partitionBy())
    trend = trend.select("goods_id", (F.col("orders") / peak).cast("double").alias("score"))
    trending = shoppers.crossJoin(F.broadcast(trend))

    return {"repeat": _per_user_max(repeat),
            "als": _per_user_max(als_recs),
            "items": _per_user_max(_top_per_user(knn, params.candidates)),
            "trending": trending}


def blend(parts: dict[str, DataFrame], weights: dict[str, float],
          pairs: DataFrame) -> DataFrame:
    """(user_key, goods_id, score, bought): the weighted sum of the components' scores."""
    weighted = None
    for name, weight in weights.items():
        if weight == 0:
            continue
        part = parts[name].select("user_key", "goods_id",
                                  (F.col("score") * F.lit(float(weight))).alias("score"))
        weighted = part if weighted is None else weighted.unionByName(part)
    if weighted is None:
        raise ValueError("every hybrid weight is 0: nothing to recommend with")
    blended = weighted.groupBy("user_key", "goods_id").agg(F.sum("score").alias("score"))
    bought = pairs.select("user_key", "goods_id", F.lit(True).alias("bought"))
    return blended.join(bought, ["user_key", "goods_id"], "left").fillna(False, ["bought"])


def score(lines: DataFrame, model: ALSModel, users: DataFrame, items: DataFrame,
          shoppers: DataFrame | None, asof: dt.date, params: HybridParams) -> DataFrame:
    """(user_key, goods_id, score, bought): every candidate of the `shoppers` (None: all of
    them), blended."""
    parts = components(lines, model, users, items, shoppers, asof, params)
    return blend(parts, params.weights(), bought_pairs(lines))


def top_lists(scores: DataFrame, k: int) -> DataFrame:
    """(user_key, goods_id, score, rank, bought): the best k overall and the best k new.

    `rank` orders the union by score, so filtering `bought` rows out of it leaves the
    best new goods in order."""
    overall = Window.partitionBy("user_key").orderBy(F.desc("score"), "goods_id")
    fresh = Window.partitionBy("user_key", "bought").orderBy(F.desc("score"), "goods_id")
    kept = (scores.withColumn("r_all", F.row_number().over(overall))
            .withColumn("r_new", F.row_number().over(fresh))
            .where((F.col("r_all") <= k) | (~F.col("bought") & (F.col("r_new") <= k))))
    return kept.withColumn("rank", F.row_number().over(overall)).select(
        "user_key", "goods_id", "score", "rank", "bought")
