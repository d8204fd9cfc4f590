"""Did the recommendations sell? The nightly attribution of impressions, clicks and orders.

For the night of day D it reads the impressions of the last `attribution.days` days up to D
(events/impressions, engine/events.py), the feedback (events/feedback, each event id
counted once) and the clean orders of the same days, and joins them:

* an impression is *clicked* (or *carted*) when a click (add-to-cart) names its
  recommendation id and one of the goods it showed;
* an order line is *attributed* when the same shopper bought one of the goods an
  impression showed them at most `attribution.window_hours` after it (order times are read
  as UTC, as the cleaning job does); a line shown by several impressions counts once, for
  the last one before it (last touch). Its revenue is price x quantity.

Per experiment arm, the unit is the shopper, as the arms are assigned by shopper: the share
of exposed shoppers who bought a recommended goods (conversion) and the recommended
revenue per exposed shopper, each arm against the control arm (the experiment's first):
the difference with its confidence interval and a two-sided test (two-proportion z-test;
Welch's normal approximation for revenue). With more than two arms the intervals and the
significance level are Bonferroni-corrected for the comparisons made. Per route: the share
of impressions clicked and bought. A daily series (by impression day) feeds the chart.

    reports/attribution/<D>.json     what the service's /experiments and the merch page read

Run with: shoprecs attribute --date 2026-12-05
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
from decimal import Decimal
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from core.files import atomic_write
from engine.events import ATTRIBUTION_DIR, EVENTS_DIR
from etl.clean import read_clean

log = logging.getLogger(__name__)

ALPHA = 0.05
# Revenue is summed as decimals: exact, so the report of a night run twice is the same
# whatever order the executors added it in (doubles differ in the last digits).
MONEY = DecimalType(18, 4)
IMPRESSION_SCHEMA = ("id string, time string, shopper string, route string, version string, "
                     "experiment string, arm string, control string, variant string, "
                     "sources array<string>, goods array<string>")
FEEDBACK_SCHEMA = ("id string, time string, type string, recommendation string, goods string, "
                   "shopper string")


# ---- statistics (plain Python: the aggregates are a few numbers per arm) ----------------

_NORMAL = statistics.NormalDist()


def _z(alpha: float) -> float:
    """The standard normal quantile 1 - alpha/2."""
    return _NORMAL.inv_cdf(1 - alpha / 2)


def _p_value(z: float) -> float:
    """Two-sided."""
    return 2 * _NORMAL.cdf(-abs(z))


def wilson(successes: int, n: int, alpha: float = ALPHA) -> dict:
    """A proportion with its Wilson score interval."""
    if n == 0:
        return {"value": None, "low": None, "high": None}
    z, p = _z(alpha), successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def proportion_difference(x1: int, n1: int, x0: int, n0: int, alpha: float = ALPHA) -> dict:
    """p1 - p0 with its (Wald) interval and the pooled two-proportion z-test's p-value."""
    if min(n1, n0) == 0:
        return {"value": None, "low": None, "high": None, "p_value": None}
    p1, p0 = x1 / n1, x0 / n0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    pooled = (x1 + x0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z = _z(alpha)
    return {"value": p1 - p0, "low": p1 - p0 - z * se, "high": p1 - p0 + z * se,
            "p_value": 1.0 if se0 == 0 else _p_value((p1 - p0) / se0)}


def mean_difference(s1: float, q1: float, n1: int, s0: float, q0: float, n0: int,
                    alpha: float = ALPHA) -> dict:
    """mean1 - mean0 from sums and sums of squares, Welch's standard error, normal test."""
    if min(n1, n0) < 2:
        return {"value": None, "low": None, "high": None, "p_value": None}
    m1, m0 = s1 / n1, s0 / n0
    v1 = max(0.0, (q1 - n1 * m1 * m1) / (n1 - 1))
    v0 = max(0.0, (q0 - n0 * m0 * m0) / (n0 - 1))
    se = math.sqrt(v1 / n1 + v0 / n0)
    z = _z(alpha)
    return {"value": m1 - m0, "low": m1 - m0 - z * se, "high": m1 - m0 + z * se,
            "p_value": 1.0 if se == 0 else _p_value((m1 - m0) / se)}


# ---- the Spark job ------------------------------------------------------------------------

def _read(spark: SparkSession, root: Path, kind: str, schema: str, first: dt.date,
          last: dt.date) -> DataFrame | None:
    folder = root / EVENTS_DIR / kind
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    found = [str(folder / f"dt={d}") for d in days if (folder / f"dt={d}").is_dir()]
    if not found:
        return None
    events = (spark.read.schema(schema).option("basePath", str(folder)).json(found)
              .withColumn("ts", F.to_timestamp("time")).where(F.col("ts").isNotNull()))
    first_seen = Window.partitionBy("id").orderBy("ts")  # a retried write or POST: once
    return (events.withColumn("_n", F.row_number().over(first_seen)).where("_n = 1")
            .drop("_n"))


def _recorded_controls(impressions: DataFrame) -> dict[str, str]:
    """{experiment: its control arm} as the service recorded them with the impressions."""
    rows = (impressions.where(F.col("experiment").isNotNull() & F.col("control").isNotNull())
            .groupBy("experiment").agg(F.min("control").alias("control")).collect())
    return {r["experiment"]: r["control"] for r in rows}


def _attributed(shown: DataFrame, orders: DataFrame, window_hours: float) -> DataFrame:
    """Order lines bought by the shopper an impression showed them to, within the window
    after it; each line once per experiment, for the last impression before it."""
    seconds = int(window_hours * 3600)
    lines = orders.where(F.col("user_key").isNotNull()).select(
        "order_id", "goods_id", "order_ts", "user_key",
        (F.col("quantity") * F.coalesce(F.col("price"), F.lit(0.0))).cast(MONEY)
        .alias("revenue"))
    joined = shown.join(
        lines, (shown.shopper == lines.user_key) & (shown.goods == lines.goods_id)
        # order dates carry whole seconds: an order in the impression's second counts
        & (lines.order_ts >= F.date_trunc("second", shown.ts))
        & (lines.order_ts <= shown.ts + F.expr(f"INTERVAL {seconds} SECONDS")))
    last_touch = Window.partitionBy("experiment_key", "order_id", "goods_id").orderBy(
        F.col("ts").desc(), F.col("id").desc())
    return (joined.withColumn("_n", F.row_number().over(last_touch)).where("_n = 1")
            .select("id", "order_id", "goods_id", "revenue"))


def _per_arm(impressions: DataFrame, attributed: DataFrame) -> list[dict]:
    """Per (experiment, arm): exposed shoppers, converted shoppers, revenue sums."""
    per_shopper = (impressions.where(F.col("experiment").isNotNull()
                                     & F.col("shopper").isNotNull())
                   .join(attributed.groupBy("id").agg(F.sum("revenue").alias("revenue")),
                         "id", "left")
                   .groupBy("experiment", "arm", "variant", "shopper")
                   .agg(F.sum(F.coalesce("revenue", F.lit(0).cast(MONEY))).alias("revenue"),
                        F.max(F.col("revenue").isNotNull().cast("int")).alias("converted")))
    rows = per_shopper.groupBy("experiment", "arm", "variant").agg(
        F.count("*").alias("shoppers"), F.sum("converted").alias("converted"),
        F.sum("revenue").alias("revenue"),
        F.sum(F.col("revenue") * F.col("revenue")).alias("revenue_squares")).collect()
    return [_floats(r.asDict()) for r in rows]


def _per_route(impressions: DataFrame, clicks: DataFrame, attributed: DataFrame,
               by_day: bool = False) -> list[dict]:
    """Per (experiment, arm, route[, day]): impressions, clicked, carted, bought, revenue."""
    bought = attributed.groupBy("id").agg(F.sum("revenue").alias("revenue"))
    keys = ["experiment", "arm", "route"] + (["day"] if by_day else [])
    rows = (impressions.join(clicks, "id", "left").join(bought, "id", "left")
            .groupBy(*keys).agg(
                F.count("*").alias("impressions"),
                F.countDistinct("shopper").alias("shoppers"),
                F.sum(F.coalesce("clicked", F.lit(0))).alias("clicked"),
                F.sum(F.coalesce("carted", F.lit(0))).alias("carted"),
                F.sum(F.col("revenue").isNotNull().cast("int")).alias("bought"),
                F.sum(F.coalesce("revenue", F.lit(0).cast(MONEY))).alias("revenue"))
            .collect())
    return [_floats(r.asDict()) for r in rows]


def _floats(row: dict) -> dict:
    """Decimal sums (exact, whatever order Spark added them in) as floats, for the report."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def _experiments(arms: list[dict], routes: list[dict], control_of: dict[str, str]) -> list:
    found = []
    for name in sorted({a["experiment"] for a in arms}):
        mine = sorted((a for a in arms if a["experiment"] == name), key=lambda a: a["arm"])
        control = control_of.get(name) or mine[0]["arm"]
        base = next((a for a in mine if a["arm"] == control), mine[0])
        alpha = ALPHA / max(1, len(mine) - 1)  # Bonferroni over the comparisons
        entry = {"name": name, "control": base["arm"], "alpha": alpha,
                 "confidence": 1 - alpha, "arms": [], "comparisons": []}
        for arm in [base] + [a for a in mine if a is not base]:
            n, revenue = arm["shoppers"], arm["revenue"] or 0.0
            entry["arms"].append({
                "arm": arm["arm"], "variant": arm["variant"], "shoppers": n,
                "converted": arm["converted"], "conversion": wilson(arm["converted"], n, alpha),
                "revenue": revenue, "revenue_per_shopper": revenue / n if n else None,
                "routes": sorted(({k: r[k] for k in ("route", "impressions", "shoppers",
                                                      "clicked", "carted", "bought", "revenue")}
                                  | {"click_rate": wilson(r["clicked"], r["impressions"], alpha),
                                     "buy_rate": wilson(r["bought"], r["impressions"], alpha)}
                                  for r in routes
                                  if r["experiment"] == name and r["arm"] == arm["arm"]),
                                 key=lambda r: r["route"])})
            if arm is base:
                continue
            conversion = proportion_difference(arm["converted"], n, base["converted"],
                                               base["shoppers"], alpha)
            per_shopper = mean_difference(revenue, arm["revenue_squares"] or 0.0, n,
                                          base["revenue"] or 0.0, base["revenue_squares"] or 0.0,
                                          base["shoppers"], alpha)
            entry["comparisons"].append({
                "arm": arm["arm"], "against": base["arm"],
                "conversion_difference": conversion,
                "revenue_per_shopper_difference": per_shopper,
                "significant": conversion["p_value"] is not None
                and conversion["p_value"] < alpha})
        found.append(entry)
    return found


def run(spark: SparkSession, settings, day: dt.date) -> dict:
    """Attribute the impressions of the `attribution.days` days up to `day` and write
    reports/attribution/<day>.json; returns the report."""
    root = settings.root
    first = day - dt.timedelta(days=settings.attribution.days - 1)
    report = {"date": day.isoformat(), "first_day": first.isoformat(),
              "window_hours": settings.attribution.window_hours,
              "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "impressions": 0, "experiments": [], "routes": [], "daily": []}
    impressions = _read(spark, root, "impressions", IMPRESSION_SCHEMA, first, day)
    if impressions is None:
        log.info("attribution %s: no impressions recorded in %s..%s", day, first, day)
        return _write(root, day, report)
    impressions = (impressions.withColumn("day", F.to_date("ts"))
                   .withColumn("experiment_key", F.coalesce("experiment", F.lit("")))
                   .cache())
    feedback = _read(spark, root, "feedback", FEEDBACK_SCHEMA, first, day)
    shown = impressions.select("id", "shopper", "ts", "experiment_key",
                               F.explode("goods").alias("goods"))
    if feedback is None:
        clicks = spark.createDataFrame([], "id string, clicked int, carted int")
    else:
        hits = feedback.join(shown.select(F.col("id").alias("recommendation"), "goods"),
                             ["recommendation", "goods"])
        clicks = hits.groupBy(F.col("recommendation").alias("id")).agg(
            F.max((F.col("type") == "click").cast("int")).alias("clicked"),
            F.max((F.col("type") == "add_to_cart").cast("int")).alias("carted"))
    orders = read_clean(spark, root, first, day)
    attributed = _attributed(shown, orders, settings.attribution.window_hours).cache()
    try:
        arms = _per_arm(impressions, attributed)
        routes = _per_route(impressions, clicks, attributed)
        daily = _per_route(impressions, clicks, attributed, by_day=True)
        control_of = _recorded_controls(impressions)
    finally:
        attributed.unpersist()
        impressions.unpersist()
    if settings.experiment.name:  # impressions recorded before they named their control
        from experiments.arms import Experiment

        running = Experiment.parse(settings.experiment.name, settings.experiment.arms)
        control_of.setdefault(running.name, running.control.name)
    report["impressions"] = sum(r["impressions"] for r in routes)
    report["experiments"] = _experiments(arms, routes, control_of)
    report["routes"] = sorted(_merge_routes(routes), key=lambda r: r["route"])
    report["daily"] = sorted(({**r, "day": r["day"].isoformat()} for r in daily),
                             key=lambda r: (r["day"], r["experiment"] or "", r["arm"] or "",
                                            r["route"]))
    for entry in report["experiments"]:
        for c in entry["comparisons"]:
            d = c["conversion_difference"]
            log.info("attribution %s: %s %s vs %s: conversion %+.4f [%.4f, %.4f] p=%.3g%s",
                     day, entry["name"], c["arm"], c["against"], d["value"], d["low"],
                     d["high"], d["p_value"], " (significant)" if c["significant"] else "")
    return _write(root, day, report)


def describe(report: dict) -> list[str]:
    """The report in a few lines, for the terminal (`shoprecs attribute`, the demo)."""
    lines = [f"{report['impressions']} impressions of {report['first_day']}..{report['date']}"]
    for entry in report["experiments"]:
        lines.append(f"experiment {entry['name']} (control {entry['control']}, "
                     f"{entry['confidence']:.1%} intervals):")
        for arm in entry["arms"]:
            c = arm["conversion"]
            lines.append(f"  {arm['arm']:>10} ({arm['variant']}): {arm['shoppers']} shoppers, "
                         f"{arm['converted']} bought a recommended goods = {c['value']:.2%} "
                         f"[{c['low']:.2%}, {c['high']:.2%}], revenue {arm['revenue']:.2f}")
        for comp in entry["comparisons"]:
            d = comp["conversion_difference"]
            lines.append(f"  {comp['arm']} - {comp['against']}: {d['value']:+.2%} "
                         f"[{d['low']:+.2%}, {d['high']:+.2%}], p = {d['p_value']:.3g}: "
                         + ("significant" if comp["significant"] else "not significant"))
    return lines


def _merge_routes(routes: list[dict]) -> list[dict]:
    merged: dict[str, dict] = {}
    for r in routes:
        m = merged.setdefault(r["route"], {"route": r["route"], "impressions": 0,
                                            "clicked": 0, "bought": 0, "revenue": 0.0})
        for k in ("impressions", "clicked", "bought", "revenue"):
            m[k] += r[k] or 0
    return list(merged.values())


def _write(root: Path, day: dt.date, report: dict) -> dict:
    atomic_write(root / ATTRIBUTION_DIR / f"{day.isoformat()}.json",
                 json.dumps(report, indent=1, allow_nan=False))
    return report
