"""What the pipeline publishes: ALS blended with item-kNN, trending goods and repeat purchases.

Why a blend. On retail data like UCI Online Retail no single model wins both questions a
shop asks (bench/RESULTS.md has the figures):

* "what will this shopper buy next?" is dominated by what they already buy: the shopper's
  own purchase counts (repeat) beat every collaborative model at MAP@10 on all purchases;
* "what new goods will they like?" is won by item-to-item neighbours (kNN on shared
  buyers), ALS adds what neighbours miss, and what sells this month (trending) adds the
  season: Online Retail ramps up its Christmas goods from August.

So a shopper's score for a goods is

    w_repeat   * repeat    log1p(orders of this goods by the shopper, each counting
                           0.5 ** (its age / repeat_half_life))
  + w_als      * als       the ALS prediction (top `candidates`)
  + w_items    * items     sum over the shopper's goods j of profile(j) * cosine(j, goods),
                           profile(j) = log1p(sum over orders of exp(-age / decay_days)),
                           over each goods' `neighbours` nearest neighbours
  + w_trending * trending  orders of this goods in the last `trending_days`
  + w_recent   * recent    the same orders, each counting 0.5 ** (its age /
                           trending_half_life): what sells this week (0 in the
                           configured blend; the holdout's `latest_popularity`)

each component divided by its maximum for the shopper (trending: overall), so weights
compare like with like; a goods the shopper already bought then scores `rebuy` times that
(0: never recommended again). The weights come from `shoprecs tune`; `rebuy` is chosen each
night on the holdout (models/selection.py), because what shoppers re-buy differs most
between shops: supplies and groceries often, books and media never, and there ALS and the
neighbours would otherwise fill the list with what the shopper already owns.

The shopper's own signals (repeat, the kNN profile, what was bought) come from their whole
clean history, old purchases decayed; the fits (ALS, neighbours, trending) from the
training window. Items a shopper already bought are flagged (`bought`), and the published
list holds the best `top_k` of all goods and the best `top_k` of goods new to the shopper,
so the service can exclude what was bought without a second model: the repeat term then
drops out and the ranking of new goods is the blend of the other three.

Everything is computed in Spark. The item neighbours come from a blocked sparse product:
items are split into blocks, each block's task receives the full baskets of the shoppers
who bought any of its items, and computes the block's rows of the co-occurrence matrix
with scipy, keeping the top neighbours. No shopper pair join, nothing collected.

`recommend` computes it: Spark aggregates the per-pair inputs, the item neighbours and the
trending goods; then one pandas task per block of shoppers computes every component and
the top lists with numpy, beside a copy of the goods side (item factors, neighbours,
trending). Several blends cost one pass: the holdout and `shoprecs tune` score all their
candidates this way, with the very code that publishes.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from models._pandas import returns
from models.baselines import most_ordered
from models.similar import best_columns, nearest

COMPONENTS = ("repeat", "als", "items", "trending", "recent")


@dataclass(frozen=True)
class HybridParams:
    w_repeat: float = 2.0
    w_als: float = 0.5
    w_items: float = 0.5
    w_trending: float = 0.25
    w_recent: float = 0.0
    neighbours: int = 20  # item-kNN neighbours per goods
    decay_days: float = 90.0  # age scale of a purchase in the kNN profile
    repeat_half_life: float = 180.0  # days after which a purchase counts half as a repeat
    trending_days: int = 30
    # days: in the `recent` component an order counts 0.5 ** (age / this)
    trending_half_life: float = 3.0
    candidates: int = 100  # per shopper, from ALS, from item-kNN and from trending
    block_items: int = 2048  # goods per item-kNN task
    rebuy: float = 1.0  # a bought goods' blended score is multiplied by this; 0: left out

    def weights(self) -> dict[str, float]:
        """The blend: each component's weight, and `rebuy`."""
        return {"repeat": self.w_repeat, "als": self.w_als, "items": self.w_items,
                "trending": self.w_trending, "recent": self.w_recent, "rebuy": self.rebuy}


NEIGHBOUR_SCHEMA = StructType([StructField("goods_id", StringType()),
                               StructField("other", StringType()),
                               StructField("sim", DoubleType())])


QUERY_CHUNK = 512  # goods whose neighbours one dense product computes (memory bound)


def _block_neighbours(k: int, chunk: int):
    @returns(NEIGHBOUR_SCHEMA)
    def compute(pdf):
        import pandas as pd
        import scipy.sparse as sp

        block = pdf["block"].iat[0]
        goods, gi = np.unique(pdf["goods_id"].to_numpy(), return_inverse=True)
        _, ui = np.unique(pdf["user_key"].to_numpy(), return_inverse=True)
        x = sp.csc_matrix((np.ones(len(pdf), np.float32), (ui, gi)),
                          shape=(ui.max() + 1, len(goods)))
        x.data[:] = 1.0  # a (shopper, goods) pair counts once
        buyers = np.zeros(len(goods))
        buyers[gi] = pdf["n"].to_numpy()
        home = np.zeros(len(goods), bool)
        home[gi] = pdf["item_block"].to_numpy() == block
        kk = min(k, len(goods) - 1)
        if kk <= 0 or not home.any():
            return None
        xt = x.T.tocsr()
        out = []
        homes = np.flatnonzero(home)
        for start in range(0, len(homes), chunk):
            query = homes[start:start + chunk]
            co = (xt[query] @ x).toarray()  # query goods x local goods, shared buyers
            rows, cols, sim, _ = nearest(co / np.sqrt(np.outer(buyers[query], buyers)),
                                         query, kk, positive=True)
            out.append(pd.DataFrame({"goods_id": goods[rows], "other": goods[cols],
                                     "sim": sim.astype(float)}))
        return pd.concat(out, ignore_index=True)
    return compute


def item_neighbours(lines: DataFrame, k: int = 20, block_items: int = 2048) -> DataFrame:
    """(goods_id, other, sim): each goods' k nearest goods by cosine of their buyer sets."""
    pairs = bought_pairs(lines)
    buyers = pairs.groupBy("goods_id").agg(F.count("*").alias("n"))
    n_goods = buyers.count()
    blocks = max(1, math.ceil(n_goods / block_items))
    tagged = pairs.join(buyers, "goods_id").withColumn(
        "item_block", F.pmod(F.xxhash64("goods_id"), F.lit(blocks)))
    touched = tagged.select("user_key", F.col("item_block").alias("block")).distinct()
    rows = touched.join(tagged, "user_key")
    return rows.groupBy("block").applyInPandas(_block_neighbours(k, QUERY_CHUNK),
                                               NEIGHBOUR_SCHEMA)


def bought_pairs(lines: DataFrame) -> DataFrame:
    """(user_key, goods_id): who bought what, once."""
    return lines.where(F.col("user_key").isNotNull()).select("user_key", "goods_id").distinct()


def pair_signals(lines: DataFrame, shoppers: DataFrame | None, asof: dt.date,
                 params: HybridParams) -> DataFrame:
    """(user_key, goods_id, repeat, weight) for each goods a shopper bought (`shoppers`,
    one column user_key; None: every known shopper of `lines`), in one aggregation:
    repeat = log1p(sum over the orders of the goods of 0.5 ** (age / repeat_half_life)),
    weight = log1p(sum over those orders of exp(-age / decay_days)), the kNN profile."""
    known = lines.where(F.col("user_key").isNotNull())
    if shoppers is not None:
        known = known.join(shoppers, "user_key")
    age = F.datediff(F.lit(asof.isoformat()).cast("date"), F.col("dt").cast("date"))
    return (known.select("user_key", "goods_id", "order_id", age.alias("age")).distinct()
            .groupBy("user_key", "goods_id").agg(
                F.log1p(F.sum(F.pow(F.lit(0.5), F.col("age") / F.lit(
                    params.repeat_half_life)))).alias("repeat"),
                F.log1p(F.sum(F.exp(-F.col("age") / F.lit(params.decay_days)))).alias("weight")))


def trending_goods(lines: DataFrame, asof: dt.date, params: HybridParams,
                   half_life: float = 0.0) -> DataFrame:
    """(goods_id, score): the `candidates` goods in the most orders of the last
    `trending_days` up to `asof` (each order counting 0.5 ** (age / half_life) when that
    is set: what sells this week before what sold three weeks ago), each scored as a share
    of the first one's."""
    since = (asof - dt.timedelta(days=params.trending_days - 1)).isoformat()
    weight = None
    if half_life > 0:
        age = F.datediff(F.lit(asof.isoformat()).cast("date"), F.col("dt").cast("date"))
        weight = F.pow(F.lit(0.5), age / F.lit(half_life))
    top = most_ordered(lines.where(F.col("dt").cast("string") >= since), params.candidates,
                       weight).collect()
    # `candidates` rows at most, scaled on the driver (as train.popular): a window over all
    # of them is a single-partition window, and Spark warns of it at every plan.
    peak = top[0]["orders"] if top else 1
    return lines.sparkSession.createDataFrame(
        [(r["goods_id"], r["orders"] / peak) for r in top], "goods_id string, score double")


RECOMMEND_SCHEMA = StructType([
    StructField("model", StringType()), StructField("user_key", StringType()),
    StructField("goods_id", StringType()), StructField("score", DoubleType()),
    StructField("rank", IntegerType()), StructField("bought", BooleanType())])
USERS_PER_BLOCK = 8192  # shoppers per pandas task, scored in dense chunks of:
_CELLS_PER_CHUNK = 4_000_000  # shoppers x goods per dense chunk: ~32 MB a float64 matrix


def recommend(lines: DataFrame, model: ALSModel, users: DataFrame, items: DataFrame,
              asof: dt.date, params: HybridParams, k: int,
              shoppers: DataFrame | None = None,
              blends: dict[str, dict[str, float]] | None = None,
              history: DataFrame | None = None) -> DataFrame:
    """(model, user_key, goods_id, score, rank, bought): for every shopper of `history` (or
    of `shoppers`) and every blend of `blends` ({model name: HybridParams.weights()},
    default {"hybrid": params.weights()}), the best k goods overall and the best k new,
    ranked by score, ties by goods id (`rank` orders the union, so leaving out the bought
    rows leaves the best new goods in order).

    `lines` (the training window) feeds the fits: the item neighbours and trending goods
    (ALS was fitted on it); `history` (every clean line up to `asof`, default `lines`) the
    shopper's own signals: what they bought (the `bought` flag, the repeat component and the
    kNN profile, old purchases decayed), so a shopper who last bought before the window is
    still known and is never offered again what they bought long ago.

    Spark aggregates the per-pair inputs (repeat, kNN profile), the item neighbours and
    trending goods; then each block of shoppers meets a copy of the goods side (ALS item
    factors, neighbours, trending), and one pandas task per block computes every component
    with numpy and scipy in chunks of shoppers. Several blends cost one pass (the holdout
    evaluation measures the hybrid, ALS alone and the kNN alone this way)."""
    blends = blends or {"hybrid": params.weights()}
    for name, weights in blends.items():
        if not any(weights.get(c, 0) for c in COMPONENTS):
            raise ValueError(f"every weight of blend {name!r} is 0: nothing to recommend with")
    spark = lines.sparkSession
    history = lines if history is None else history
    if shoppers is not None:
        shoppers = shoppers.select("user_key").distinct()
    pair = pair_signals(history, shoppers, asof, params)
    user_factors = model.userFactors.join(
        users.select("id", F.col("key").alias("user_key")), "id")
    if shoppers is not None:
        user_factors = user_factors.join(shoppers, "user_key", "left_semi")
    # Blocks by the shoppers scored (ALS has factors for the window's).
    n_shoppers = (shoppers if shoppers is not None else history.where(
        F.col("user_key").isNotNull()).select("user_key").distinct()).count()
    n_blocks = max(spark.sparkContext.defaultParallelism,
                   math.ceil(n_shoppers / USERS_PER_BLOCK))
    block = F.pmod(F.xxhash64("user_key"), F.lit(n_blocks)).cast("int").alias("block")
    # Each side's rows leave the other's columns null.
    shopper_side = pair.select(block, "user_key", "goods_id", "repeat", "weight").unionByName(
        user_factors.select(block, "user_key", "features"), allowMissingColumns=True)

    neighbours = item_neighbours(lines, params.neighbours, params.block_items)
    item_factors = model.itemFactors.join(
        items.select("id", F.col("key").alias("goods_id")), "id")

    def side(kind, df, **columns):
        # Its own column names: both sides come from `lines`, and cogroup must not find
        # one attribute on both. The columns a kind lacks are null.
        return df.select(F.lit(kind).alias("kind"), F.col("goods_id").alias("item"),
                         *(F.col(column).alias(name) for name, column in columns.items()))

    goods_side = side("goods", history.select("goods_id").unionByName(
        lines.select("goods_id")).distinct())
    parts = [side("factors", item_factors, features="features"),
             side("neighbour", neighbours, other="other", value="sim")]
    for name, half_life in (("trending", 0.0), ("recent", params.trending_half_life)):
        if any(weights.get(name) for weights in blends.values()):  # else left out, unread
            parts.append(side(name, trending_goods(lines, asof, params, half_life),
                              value="score"))
    for part in parts:
        goods_side = goods_side.unionByName(part, allowMissingColumns=True)
    blocks = spark.range(n_blocks).select(F.col("id").cast("int").alias("block"))
    goods_side = goods_side.crossJoin(F.broadcast(blocks))
    return (shopper_side.groupBy("block").cogroup(goods_side.groupBy("block"))
            .applyInPandas(_recommend_block(params, k, blends), RECOMMEND_SCHEMA))


def _top(scores: np.ndarray, n: int) -> list[np.ndarray]:
    """Per row, the columns of its n best finite scores, best first, ties to the lower
    column (columns are goods in goods_id order, as Spark's orderBy(desc score, goods_id))."""
    n = min(n, scores.shape[1])
    if n < 1:
        return [np.empty(0, np.int64)] * len(scores)
    best = best_columns(scores, n)
    return [row[np.isfinite(s[row])] for row, s in zip(best, scores)]


def _normalized_top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, candidate mask): the n best of each row divided by the row's best (negative
    scores count as 0, a row whose best is not positive scores 0): `_top_per_user` then
    `_per_user_max`."""
    values = np.zeros(scores.shape)
    mask = np.zeros(scores.shape, bool)
    for r, cols in enumerate(_top(scores, n)):
        if len(cols) == 0:
            continue
        mask[r, cols] = True
        peak = scores[r, cols[0]]
        if peak > 0:
            values[r, cols] = np.maximum(scores[r, cols], 0.0) / peak
    return values, mask


def _recommend_block(params: HybridParams, k: int, blends: dict[str, dict[str, float]]):
    @returns(RECOMMEND_SCHEMA)
    def compute(shopper_rows, goods_rows):
        import pandas as pd
        import scipy.sparse as sp

        if shopper_rows.empty or goods_rows.empty:
            return None
        goods = np.unique(goods_rows["item"].to_numpy().astype(str))
        n_goods = len(goods)
        kind = goods_rows["kind"].to_numpy()

        def index(values):
            return np.searchsorted(goods, np.asarray(values).astype(str))

        rows = goods_rows[kind == "factors"]
        has_factors = np.zeros(n_goods, bool)
        item_vectors = None
        if len(rows):
            rank = len(rows["features"].iat[0])
            item_vectors = np.zeros((n_goods, rank), np.float32)
            at = index(rows["item"])
            item_vectors[at] = np.stack(rows["features"].to_numpy())
            has_factors[at] = True
        rows = goods_rows[kind == "neighbour"]
        sims = sp.csr_matrix((rows["value"].to_numpy(float),
                              (index(rows["item"]), index(rows["other"]))),
                             shape=(n_goods, n_goods))
        lately = {}  # trending, recent: (score, is a candidate) by goods
        for name in ("trending", "recent"):
            rows = goods_rows[kind == name]
            scores, listed = np.zeros(n_goods), np.zeros(n_goods, bool)
            scores[index(rows["item"])] = rows["value"].to_numpy(float)
            listed[index(rows["item"])] = True
            lately[name] = (scores, listed)

        pairs = shopper_rows[shopper_rows["goods_id"].notna()]
        factor_rows = shopper_rows[shopper_rows["features"].notna()]
        shoppers = np.unique(np.concatenate([pairs["user_key"].to_numpy().astype(str),
                                             factor_rows["user_key"].to_numpy().astype(str)]))
        pair_user = np.searchsorted(shoppers, pairs["user_key"].to_numpy().astype(str))
        pair_goods = index(pairs["goods_id"])
        repeat_all = sp.csr_matrix((pairs["repeat"].to_numpy(float), (pair_user, pair_goods)),
                                   shape=(len(shoppers), n_goods))
        weight_all = sp.csr_matrix((pairs["weight"].to_numpy(float), (pair_user, pair_goods)),
                                   shape=(len(shoppers), n_goods))
        has_pairs = np.diff(repeat_all.indptr) > 0
        user_vectors = None
        has_user_factors = np.zeros(len(shoppers), bool)
        if item_vectors is not None and len(factor_rows):
            user_vectors = np.zeros((len(shoppers), item_vectors.shape[1]), np.float32)
            at = np.searchsorted(shoppers, factor_rows["user_key"].to_numpy().astype(str))
            user_vectors[at] = np.stack(factor_rows["features"].to_numpy())
            has_user_factors[at] = True

        out = []
        chunk = max(16, _CELLS_PER_CHUNK // max(n_goods, 1))
        for lo in range(0, len(shoppers), chunk):
            hi = min(lo + chunk, len(shoppers))
            m = hi - lo
            parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            repeat = repeat_all[lo:hi].toarray()
            bought = repeat > 0
            peak = repeat.max(axis=1, keepdims=True)
            parts["repeat"] = (np.divide(repeat, peak, out=np.zeros_like(repeat),
                                         where=peak > 0), bought)
            knn = (weight_all[lo:hi] @ sims).toarray()
            knn[knn <= 0] = -np.inf  # only goods some neighbour reaches are candidates
            parts["items"] = _normalized_top(knn, params.candidates)
            als_scores = np.full((m, n_goods), -np.inf)
            if user_vectors is not None:
                als_scores = (user_vectors[lo:hi] @ item_vectors.T).astype(np.float64)
                als_scores[~(has_user_factors[lo:hi, None] & has_factors)] = -np.inf
            parts["als"] = _normalized_top(als_scores, params.candidates)
            shopper_mask = has_pairs[lo:hi, None]
            for name, (scores, listed) in lately.items():
                parts[name] = (np.broadcast_to(scores, (m, n_goods)), shopper_mask & listed)
            keys = shoppers[lo:hi]
            for name, weights in blends.items():
                total = np.zeros((m, n_goods))
                candidate = np.zeros((m, n_goods), bool)
                for component in COMPONENTS:
                    if weight := weights.get(component, 0.0):
                        values, mask = parts[component]
                        total += weight * np.where(mask, values, 0.0)
                        candidate |= mask
                total[~candidate] = -np.inf
                # below 1e-9 a score is the summation order of a parallel job, not the
                # model: rounded, a night run twice ranks and stores the same
                total = np.round(total, 9)
                fresh = np.where(bought, -np.inf, total)
                rebuy = weights.get("rebuy", 1.0)
                if rebuy != 1.0:
                    total = fresh if rebuy == 0.0 else np.where(bought, total * rebuy, total)
                at_row, at_col = [], []
                for r, (best, best_new) in enumerate(zip(_top(total, k), _top(fresh, k))):
                    cols = np.union1d(best, best_new)
                    at_row.append(np.full(len(cols), r))
                    at_col.append(cols[np.lexsort((cols, -total[r, cols]))])
                rows_, cols_ = np.concatenate(at_row), np.concatenate(at_col)
                out.append(pd.DataFrame({
                    "model": name, "user_key": keys[rows_], "goods_id": goods[cols_],
                    "score": total[rows_, cols_],
                    "rank": np.concatenate([np.arange(1, len(c) + 1, dtype=np.int32)
                                            for c in at_col]),
                    "bought": bought[rows_, cols_]}))
        return pd.concat(out, ignore_index=True) if out else None
    return compute
