"""The strongest simple references a shop could compare us with, in NumPy and SciPy.

* EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the
  closed-form item-item model B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹ over the binary
  shopper × goods matrix; scores X·B. λ tuned.
* RP3beta (Paudel et al. 2017; Dacrema et al., "Are we really making much progress?",
  RecSys 2019): the random walk goods → shopper → goods, W = (P_ui^α)ᵀ-walk · (P_ui^α)
  with P row-stochastic, each column divided by the goods' popularity^β; scores X·W.
  α and β tuned.
* Personal top-frequency with time decay (Li et al., "A Next Basket Recommendation Reality
  Check", 2023): each shopper's own goods by the sum over their orders of
  exp(-age / τ), then the most-ordered goods to fill. τ tuned.
* Recent popularity: the most-ordered goods of the last d days before the cut (d tuned).

Each gives (user_key, goods_id, score) for the test shoppers, their best `n` goods;
bench/quality.py and bench/profiles.py tune each on their validation window, with the
night's own evaluator, like every other reference.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable

import numpy as np

EASE_GRID = [dict(lam=lam) for lam in (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0)]
RP3_GRID = [dict(alpha=a, beta=b) for a, b in itertools.product(
    (0.5, 0.75, 1.0), (0.0, 0.2, 0.35, 0.5))]
TOPFREQ_GRID = [dict(tau=t) for t in (7.0, 30.0, 90.0, 365.0, 10_000.0)]
RECENT_GRID = [dict(days=d) for d in (7, 14, 30)]
DENSE_MAX_GOODS = 20_000  # EASE^R, RP3beta: a dense goods x goods matrix, ~3 GB here


@dataclasses.dataclass
class Data:
    """The training lines of one split as arrays: one row per (shopper, goods, order)."""

    users: np.ndarray  # shopper keys, sorted
    goods: np.ndarray  # goods ids, sorted
    user: np.ndarray  # per line: index into users
    item: np.ndarray  # per line: index into goods
    age: np.ndarray  # per line: days before the cut
    cut: dt.date

    @classmethod
    def from_lines(cls, before, cut: dt.date) -> Data:
        from pyspark.sql import functions as F

        pdf = (before.where(F.col("user_key").isNotNull())
               .select("user_key", "goods_id", "order_id",
                       F.datediff(F.lit(cut.isoformat()).cast("date"),
                                  F.col("dt").cast("date")).alias("age"))
               .distinct().toPandas())
        users, ui = np.unique(pdf["user_key"].to_numpy().astype(str), return_inverse=True)
        goods, gi = np.unique(pdf["goods_id"].to_numpy().astype(str), return_inverse=True)
        return cls(users, goods, ui, gi, pdf["age"].to_numpy(float), cut)

    def binary(self):
        import scipy.sparse as sp

        x = sp.csr_matrix((np.ones(len(self.user), np.float64), (self.user, self.item)),
                          shape=(len(self.users), len(self.goods)))
        x.data[:] = 1.0
        return x

    def orders_per_goods(self, days: float | None = None) -> np.ndarray:
        keep = np.ones(len(self.age), bool) if days is None else self.age <= days
        return np.bincount(self.item[keep], minlength=len(self.goods)).astype(float)


def ease(data: Data, lam: float) -> Callable[[np.ndarray], np.ndarray]:
    x = data.binary()
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return lambda rows: np.asarray(x[rows] @ b)


def rp3beta(data: Data, alpha: float, beta: float) -> Callable[[np.ndarray], np.ndarray]:
    import scipy.sparse as sp

    x = data.binary()
    per_user = np.asarray(x.sum(axis=1)).ravel()
    per_goods = np.asarray(x.sum(axis=0)).ravel()
    p_ui = sp.diags(1.0 / np.maximum(per_user, 1)) @ x  # shopper -> goods
    p_iu = sp.diags(1.0 / np.maximum(per_goods, 1)) @ x.T.tocsr()  # goods -> shopper
    p_ui.data **= alpha
    p_iu.data **= alpha
    w = (p_iu @ p_ui).toarray()
    w /= np.power(np.maximum(per_goods, 1), beta)[None, :]
    w[np.diag_indices_from(w)] = 0.0
    return lambda rows: np.asarray(x[rows] @ w)


def top_frequency(data: Data, tau: float) -> Callable[[np.ndarray], np.ndarray]:
    """The shopper's own goods by log Σ exp(-age / τ) (in log space: no order's weight
    underflows), all above the most-ordered goods that fill the rest of the list."""
    import pandas as pd
    import scipy.sparse as sp

    lines = pd.DataFrame({"u": data.user, "i": data.item, "age": data.age})
    youngest = lines.groupby(["u", "i"])["age"].transform("min")
    lines["w"] = np.exp(-(lines["age"] - youngest) / tau)
    lines["youngest"] = youngest
    pairs = lines.groupby(["u", "i"]).agg(w=("w", "sum"), youngest=("youngest", "first"))
    value = np.log(pairs["w"].to_numpy()) - pairs["youngest"].to_numpy() / tau
    u, i = (pairs.index.get_level_values(n).to_numpy() for n in ("u", "i"))
    own = sp.csr_matrix((1_000.0 + value, (u, i)), shape=(len(data.users), len(data.goods)))
    popular = data.orders_per_goods()
    fill = 0.999 * popular / max(popular.max(), 1.0)
    return lambda rows: np.maximum(own[rows].toarray(), fill[None, :])


def recent_popularity(data: Data, days: int) -> Callable[[np.ndarray], np.ndarray]:
    recent = data.orders_per_goods(days)
    return lambda rows: np.broadcast_to(recent, (len(rows), len(recent)))


MODELS = {"EASE^R": (ease, EASE_GRID), "RP3beta": (rp3beta, RP3_GRID),
          "personal top-frequency, decayed": (top_frequency, TOPFREQ_GRID),
          "recent popularity": (recent_popularity, RECENT_GRID)}


def recommend(spark, data: Data, scorer, shoppers: list[str], n: int, chunk: int = 2048):
    """The scorer's best n goods for each of `shoppers` that `data` knows, as a Spark
    DataFrame (user_key, goods_id, score)."""
    import pandas as pd

    from models.similar import best_columns

    rows = np.flatnonzero(np.isin(data.users, np.asarray(shoppers, str)))  # users: sorted
    parts = []
    n = min(n, len(data.goods))
    for lo in range(0, len(rows), chunk):
        block = rows[lo:lo + chunk]
        scores = np.array(scorer(block), dtype=np.float64)
        best = best_columns(scores, n)
        users = np.repeat(data.users[block], n)
        cols = np.concatenate(best)
        vals = np.take_along_axis(scores, np.stack(best), axis=1).ravel()
        parts.append(pd.DataFrame({"user_key": users, "goods_id": data.goods[cols],
                                   "score": vals}))
    pdf = pd.concat(parts, ignore_index=True)
    return spark.createDataFrame(pdf, "user_key string, goods_id string, score double")


def fit(model, data: Data, params: dict):
    """`model` (a function of this module) fitted on `data`; None when it cannot scale."""
    if model in (ease, rp3beta) and len(data.goods) > DENSE_MAX_GOODS:
        return None
    return model(data, **params)
