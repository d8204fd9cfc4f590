"""The nightly attribution (experiments/attribution.py): its statistics against scipy, and its
joins on a handful of hand-made impressions, clicks and orders whose answer is known."""
import datetime as dt
import json

import pytest
from scipy import stats

from experiments import attribution

DAY = dt.date(2026, 12, 1)


def test_the_statistics_match_scipy():
    assert attribution._z(0.05) == pytest.approx(stats.norm.ppf(0.975), abs=1e-9)
    assert attribution._z(0.025) == pytest.approx(stats.norm.ppf(0.9875), abs=1e-9)
    found = attribution.wilson(30, 200)
    lo, hi = stats.binomtest(30, 200).proportion_ci(method="wilson")
    assert (found["low"], found["high"]) == pytest.approx((lo, hi))
    diff = attribution.proportion_difference(60, 400, 40, 400)
    pooled = 100 / 800
    z = 0.05 / (pooled * (1 - pooled) * (2 / 400)) ** 0.5
    assert diff["value"] == pytest.approx(0.05)
    assert diff["p_value"] == pytest.approx(2 * stats.norm.sf(z))
    z95 = stats.norm.ppf(0.975)  # the interval: unpooled standard error
    se = (0.15 * 0.85 / 400 + 0.10 * 0.90 / 400) ** 0.5
    assert (diff["low"], diff["high"]) == pytest.approx((0.05 - z95 * se, 0.05 + z95 * se))
    rng = __import__("numpy").random.default_rng(0)
    a, b = rng.exponential(2.0, 500), rng.exponential(2.5, 400)
    mean = attribution.mean_difference(b.sum(), (b * b).sum(), len(b), a.sum(),
                                       (a * a).sum(), len(a))
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert mean["value"] == pytest.approx(b.mean() - a.mean())
    assert mean["p_value"] == pytest.approx(welch.pvalue, rel=0.02)  # normal vs t: n is large
    d = b.mean() - a.mean()
    se_w = (b.var(ddof=1) / len(b) + a.var(ddof=1) / len(a)) ** 0.5
    assert (mean["low"], mean["high"]) == pytest.approx((d - z95 * se_w, d + z95 * se_w))
    assert attribution.proportion_difference(1, 0, 1, 10)["value"] is None


def _lines(root, kind, events):
    folder = root / "events" / kind / f"dt={DAY}" / "hour=10"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "part-test.jsonl", "a") as out:
        out.writelines(json.dumps(e) + "\n" for e in events)


def _impression(rec_id, shopper, minute, goods, arm="a", route="recommendations",
                control=None):
    return {"id": rec_id, "time": f"{DAY}T10:{minute:02d}:00.500Z", "shopper": shopper,
            "route": route, "version": "v1", "experiment": "exp", "arm": arm,
            "control": control, "variant": "model", "sources": ["personalized"],
            "goods": goods}


def _clean(spark, root, lines):
    """Clean orders as etl/clean.py writes them: (order, shopper, goods, when, quantity,
    price) each."""
    from pyspark.sql import Row

    clean = spark.createDataFrame([Row(order_id=o, order_ts=t, user_key=u, goods_id=g,
                                       quantity=q, price=p, dt=t.date())
                                   for o, u, g, t, q, p in lines])
    clean = clean.withColumn("quantity", clean.quantity.cast("int"))
    clean.write.partitionBy("dt").parquet(str(root / "clean" / "orders"))


@pytest.mark.spark
def test_clicks_and_orders_are_attributed_once_to_what_was_shown(spark, settings):
    root = settings.root
    _lines(root, "impressions", [
        _impression("r1", "s1", 0, ["g1", "g2"]),
        # g1 shown again, on another route: the later impression counts (last touch)
        _impression("r2", "s1", 30, ["g1"], route="similar"),
        _impression("r3", "s2", 0, ["g1"], arm="b"),
        _impression("r4", "s3", 0, ["g9"], arm="b"),  # bought nothing shown
        _impression("r5", "s4", 0, ["g1"], arm="b"),  # bought g1 25 hours later: too late
        _impression("r1", "s1", 0, ["g1", "g2"]),  # the same impression written twice
    ])
    _lines(root, "feedback", [
        {"id": "e1", "time": f"{DAY}T10:01:00.000Z", "type": "click", "recommendation": "r1",
         "goods": "g2", "shopper": None},
        {"id": "e1", "time": f"{DAY}T10:02:00.000Z", "type": "click", "recommendation": "r1",
         "goods": "g2", "shopper": None},  # retried: counted once
        {"id": "e2", "time": f"{DAY}T10:01:00.000Z", "type": "click", "recommendation": "r3",
         "goods": "g7", "shopper": None},  # a goods r3 never showed
        {"id": "e3", "time": f"{DAY}T10:01:00.000Z", "type": "add_to_cart",
         "recommendation": "r3", "goods": "g1", "shopper": None},
    ])
    at = dt.datetime.combine(DAY, dt.time(10))
    lines = [  # (order, shopper, goods, when, quantity, price)
        ("o1", "s1", "g1", at + dt.timedelta(minutes=45), 2, 5.0),  # r2 (last touch), 10.0
        ("o1", "s1", "g3", at + dt.timedelta(minutes=45), 1, 9.0),  # not shown
        ("o2", "s1", "g2", at - dt.timedelta(minutes=5), 1, 7.0),  # before it was shown
        ("o3", "s2", "g1", at, 1, 4.0),  # in the impression's second: counts
        ("o4", "s4", "g1", at + dt.timedelta(hours=25), 1, 3.0),  # after the 24 h window
        ("o5", "s9", "g1", at + dt.timedelta(minutes=1), 1, 3.0),  # another shopper
    ]
    _clean(spark, root, lines)
    s = settings.replace(experiment_name="exp",
                            experiment_arms="a:model:50, b:model:50")
    report = attribution.run(spark, s, DAY + dt.timedelta(days=1))

    assert json.loads((root / "reports" / "attribution" / "2026-12-02.json").read_text()) \
        == report
    (exp,) = report["experiments"]
    arms = {a["arm"]: a for a in exp["arms"]}
    assert (arms["a"]["shoppers"], arms["a"]["converted"], arms["a"]["revenue"]) == (1, 1, 10.0)
    assert (arms["b"]["shoppers"], arms["b"]["converted"], arms["b"]["revenue"]) == (3, 1, 4.0)
    rec_a, similar_a = arms["a"]["routes"]  # r1's click, r2's sale
    assert (rec_a["route"], rec_a["impressions"], rec_a["clicked"], rec_a["bought"]) == (
        "recommendations", 1, 1, 0)
    assert (similar_a["route"], similar_a["impressions"], similar_a["bought"],
            similar_a["revenue"]) == ("similar", 1, 1, 10.0)
    (route_b,) = arms["b"]["routes"]
    assert (route_b["impressions"], route_b["clicked"], route_b["carted"],
            route_b["bought"]) == (3, 0, 1, 1)
    assert report["impressions"] == 5
    # every arm's routes summed, route by route
    assert [(r["route"], r["impressions"], r["clicked"], r["bought"], r["revenue"])
            for r in report["routes"]] == [("recommendations", 4, 1, 1, 4.0),
                                           ("similar", 1, 0, 1, 10.0)]
    assert {(d["day"], d["arm"], d["bought"]) for d in report["daily"]} == {
        ("2026-12-01", "a", 0), ("2026-12-01", "a", 1), ("2026-12-01", "b", 1)}
    assert exp["comparisons"][0]["arm"] == "b" and exp["control"] == "a"


@pytest.mark.spark
def test_a_past_day_is_attributed_against_the_control_recorded_with_its_impressions(
        spark, settings):
    # The experiment ran with "b" as its control; by the time the day is attributed again
    # the configuration names another experiment, or one whose first arm is "a".
    _lines(settings.root, "impressions", [
        _impression("r1", "s1", 0, ["g1"], arm="a", control="b"),
        _impression("r2", "s2", 0, ["g1"], arm="b", control="b")])
    _clean(spark, settings.root, [("o1", "s1", "g1", dt.datetime.combine(
        DAY, dt.time(11)), 1, 5.0)])
    day = DAY + dt.timedelta(days=1)
    for s in (settings, settings.replace(experiment_name="exp",
                                         experiment_arms="a:model:50, b:popular:50")):
        (exp,) = attribution.run(spark, s, day)["experiments"]
        assert exp["control"] == "b"
        assert [(c["arm"], c["against"]) for c in exp["comparisons"]] == [("a", "b")]


@pytest.mark.spark
def test_a_night_without_impressions_writes_an_empty_report(spark, settings):
    report = attribution.run(spark, settings, DAY)
    assert report["impressions"] == 0 and report["experiments"] == []
    assert (settings.root / "reports" / "attribution" / f"{DAY}.json").exists()
