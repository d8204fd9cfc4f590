"""FP-Growth association rules on baskets: "frequently bought together".

One basket per order (guest orders included). minSupport defaults to what 20 baskets
make, clamped to [0.001, 0.05], so rules need real evidence on small shops and big ones
do not drown in itemsets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.ml.fpm import FPGrowth, FPGrowthModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class FPGrowthParams:
    min_support: float | None = None  # None: derived from the number of baskets
    min_confidence: float = 0.05
    min_baskets: int = 20  # support of the derived minSupport, in baskets

    def support_for(self, n_baskets: int) -> float:
        if self.min_support is not None:
            return self.min_support
        return min(0.05, max(0.001, self.min_baskets / max(n_baskets, 1)))

    def as_dict(self) -> dict:
        return asdict(self)


def baskets(lines: DataFrame) -> DataFrame:
    """(order_id, items): the distinct goods of each order."""
    return lines.groupBy("order_id").agg(F.array_sort(F.collect_set("goods_id")).alias("items"))


def train(baskets_df: DataFrame, min_support: float, params: FPGrowthParams) -> FPGrowthModel:
    fp = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=params.min_confidence)
    return fp.fit(baskets_df)


def rules(model: FPGrowthModel) -> DataFrame:
    """(antecedent, consequent, confidence, lift, support), antecedents sorted."""
    return model.associationRules.select(
        F.array_sort("antecedent").alias("antecedent"), "consequent",
        F.col("confidence").cast("double"), F.col("lift").cast("double"),
        F.col("support").cast("double"))
