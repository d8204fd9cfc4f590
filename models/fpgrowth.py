"""FP-Growth association rules on baskets: "frequently bought together".

One basket per order (guest orders included). Two guards keep mining cheap and the rules
meaningful on real shops:

* Baskets of more than `max_basket_items` distinct goods (100 by default) are left out.
  They are wholesale and bulk orders: on UCI Online Retail 3% of invoices, up to 700 goods
  each, and FP-Growth's work grows exponentially with the frequent goods a basket holds,
  while "everything was bought with everything" is no evidence that two goods belong
  together. Supports, confidences and lifts are relative to the baskets kept.
* minSupport defaults to what `min_baskets` (50) baskets make, clamped to [0.001, 0.05],
  so rules need real evidence on small shops and big ones do not drown in itemsets. When
  a support still yields more than `max_itemsets` frequent itemsets (a dense cluster of
  goods always bought together makes them explode combinatorially), it is doubled until it
  does not, with a warning: the run stays bounded instead of mining for hours.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.ml.fpm import FPGrowth, FPGrowthModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FPGrowthParams:
    min_support: float | None = None  # None: derived from the number of baskets
    min_confidence: float = 0.05
    min_baskets: int = 50  # support of the derived minSupport, in baskets
    max_basket_items: int = 100  # larger baskets are not mined; 0: no limit
    max_itemsets: int = 200_000  # more than this: minSupport is doubled; 0: no limit
    partitions: int = 0  # groups mined in parallel; 0: the session's default parallelism

    @classmethod
    def from_settings(cls, fp) -> FPGrowthParams:
        """The [fpgrowth] section (min_support 0: derived)."""
        return cls(**{**fp.model_dump(), "min_support": fp.min_support or None})

    def support_for(self, n_baskets: int) -> float:
        if self.min_support is not None:
            return self.min_support
        return min(0.05, max(0.001, self.min_baskets / max(n_baskets, 1)))


def baskets(lines: DataFrame) -> DataFrame:
    """(order_id, items): the distinct goods of each order."""
    return lines.groupBy("order_id").agg(F.array_sort(F.collect_set("goods_id")).alias("items"))


def minable(baskets_df: DataFrame, params: FPGrowthParams) -> DataFrame:
    """The baskets FP-Growth mines: those of at most `max_basket_items` goods."""
    if params.max_basket_items <= 0:
        return baskets_df
    return baskets_df.where(F.size("items") <= params.max_basket_items)


def train(baskets_df: DataFrame, min_support: float, params: FPGrowthParams) -> FPGrowthModel:
    """Fit and mine the baskets given (filter them with `minable` first). The model's
    freqItemsets come back cached and materialized (unpersist them when done), so the
    rules and the saved model reuse them instead of mining again. Its minSupport is the
    one finally used (`min_support`, doubled while over `max_itemsets`)."""
    # Spark's parallel FP-growth mines each of its numPartitions item groups in a task of
    # its own, copying into each group the part of every basket it needs: one group per
    # core the session has (a cluster's many) keeps every core mining without copying the
    # baskets more often than there are cores to use them.
    cores = baskets_df.sparkSession.sparkContext.defaultParallelism
    groups = params.partitions or cores
    data = baskets_df.coalesce(cores)
    support = min_support
    while True:
        fp = FPGrowth(itemsCol="items", minSupport=support,
                      minConfidence=params.min_confidence, numPartitions=groups)
        model = fp.fit(data)
        # freqItemsets is lazy: uncached, counting it and then the rules (which read it
        # twice) would mine everything three times.
        n_itemsets = model.freqItemsets.persist().count()
        if params.max_itemsets <= 0 or n_itemsets <= params.max_itemsets or support >= 1.0:
            return model
        model.freqItemsets.unpersist()
        log.warning("FP-Growth at minSupport %.5f found %d itemsets, over max_itemsets %d: "
                    "mining again at %.5f (raise fpgrowth min_support to skip this)",
                    support, n_itemsets, params.max_itemsets, min(1.0, support * 2))
        support = min(1.0, support * 2)


def rules(model: FPGrowthModel) -> DataFrame:
    """(antecedent, consequent, confidence, lift, support), antecedents sorted."""
    return model.associationRules.select(
        F.array_sort("antecedent").alias("antecedent"), "consequent",
        F.col("confidence").cast("double"), F.col("lift").cast("double"),
        F.col("support").cast("double"))
