"""The order bus as it really is (core/bus_profile.py, etl/bus.py, etl/clean.py), each mode
end to end against the simulator speaking it: what lands and is cleaned equals the
simulator's ground truth (none lost, none doubled, each order in its own UTC day), nights
run one after another on the simulator's clock, so that orders listed late appear late."""
import datetime as dt
import json
from collections import Counter

import pytest

import pipeline
from core.bus_profile import BusProfile
from etl import clean
from shoprecs.demo import free_port, start_simulator
from simulation.faults import DataFaults, inject
from simulation.generator import GeneratorParams, generate
from simulation.simulator import HttpFaults

pytestmark = pytest.mark.spark

START = dt.date(2024, 3, 1)
DAYS = 4
SHOP = GeneratorParams(start=START, days=DAYS, orders=500, shoppers=80, goods=40, clusters=2,
                       items_per_cluster=10, bundles=2, seed=5, sources=3)
ORDERS, GOODS, _ = generate(SHOP)
# Another bus: other paths, parameter, key and field names, epoch dates meant in Moscow
# time, a date filter in dd.mm.yyyy, baskets without asking, a store per order.
OTHER = dict(bus_orders_path="/api/orders", bus_goods_path="/api/goods", bus_page_param="p",
             bus_per_page_param="limit", bus_expand="", bus_orders_key="data",
             bus_goods_key="items", bus_page_count_key="pages",
             bus_date_filter="dateFrom,dateTo", bus_date_filter_format="%d.%m.%Y",
             bus_date_field="createdAt", bus_date_format="epoch", bus_timezone="Europe/Moscow",
             bus_phone_field="phone", bus_source_field="storeId")


@pytest.fixture
def shop(settings):
    """Start a simulator over `orders` speaking the settings' profile, on a clock the test
    moves; returns (settings, clock)."""
    servers, now = [], [dt.datetime.combine(START, dt.time())]

    def start(orders, overrides=None, faults=None):
        s = settings.replace(bus_url=f"http://127.0.0.1:{free_port()}",
                                bus_per_page=20, **(overrides or {}))
        servers.append(start_simulator(orders, GOODS, s, faults, clock=lambda: now[0]))
        return s, now

    yield start
    for server in servers:
        server.stop()


def nights(s, now, last: dt.date, extra: int = 0) -> list[list[dict]]:
    """Each night from START to `last` (+ `extra` nights after), as the DAG runs them: at
    00:30 of the next day, extract that day (and its lookback); the manifests of each."""
    out = []
    for n in range((last - START).days + 1 + extra):
        day = START + dt.timedelta(days=n)
        now[0] = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 30))
        out.append(pipeline.extract(s, day, day))
    return out


def cleaned(spark, s) -> dict[str, dict[str, int]]:
    """Every landed day cleaned; read back: order id -> {goods id: quantity}."""
    days = sorted(p.name[3:] for p in (s.root / "landing" / "orders").glob("dt=*"))
    pipeline.clean(s, dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1]), spark)
    rows = clean.read_clean(spark, s.root, None, dt.date(2100, 1, 1)).collect()
    got: dict[str, dict[str, int]] = {}
    for r in rows:
        got.setdefault(r.order_id, {})[r.goods_id] = r.quantity
    assert len(rows) == sum(len(v) for v in got.values())  # each line once
    return got, {r.order_id: r for r in rows}


def utc_day(order: dict, zone: str = "UTC") -> dt.date:
    return BusProfile(timezone=zone).order_time(order["date"]).date()


def test_a_bus_with_other_names_works_from_its_profile_alone(spark, shop):
    orders, truth = inject(ORDERS, DataFaults(dup_pages=0.03, resend=0.03, seed=2))
    s, now = shop(orders, OTHER)
    nights(s, now, START + dt.timedelta(days=DAYS - 1))
    got, rows = cleaned(spark, s)
    assert got == truth.orders
    # each order in its own UTC day: Moscow's first three hours are the day before in UTC
    by_id = {str(o["id"]): o for o in ORDERS}
    assert all(rows[i].dt == utc_day(by_id[i], "Europe/Moscow") for i in got)
    assert any(rows[i].dt != utc_day(by_id[i]) for i in got)
    assert {rows[i].source for i in got} == {"site", "store-1", "store-2"}
    assert all(rows[i].source == by_id[i]["source"] for i in got)
    names = clean.clean_goods(spark, s.root, START + dt.timedelta(days=DAYS))
    assert names.count() == len(GOODS)  # /api/goods under "items"


def test_late_orders_land_in_their_own_day_after_the_lookback(spark, shop):
    orders, truth = inject(ORDERS, DataFaults(late=0.1, late_days=2, seed=3))
    assert len(truth.late) > 20
    s, now = shop(orders, {"bus_lookback_days": 3})
    nights(s, now, START + dt.timedelta(days=DAYS - 1), extra=2)
    got, rows = cleaned(spark, s)
    assert got == truth.orders  # none lost, none doubled
    by_id = {str(o["id"]): o for o in orders}
    assert all(rows[i].dt == utc_day(by_id[i]) for i in truth.late)  # in their own day


def landed_ids(s) -> set[str]:
    found = set()
    for path in (s.root / "landing" / "orders").glob("dt=*/orders.jsonl"):
        found |= {str(json.loads(line)["id"]) for line in path.read_text().splitlines()}
    return found


def test_orders_listed_after_the_lookback_are_missed_until_their_day_is_fetched_again(
        spark, shop):
    # listed two days late, fetched again only one day back: the documented outcome
    # (docs/bus.md) is that the nights never see them ...
    orders, truth = inject(ORDERS, DataFaults(late=0.1, late_days=2, seed=3))
    s, now = shop(orders, {"bus_lookback_days": 1})
    nights(s, now, START + dt.timedelta(days=DAYS - 1), extra=2)
    assert truth.late and landed_ids(s) == set(truth.orders) - truth.late
    # ... until a backfill fetches their days again, which lands them in their own day
    by_id = {str(o["id"]): o for o in orders}
    for day in sorted({utc_day(by_id[i]) for i in truth.late}):
        pipeline.extract(s, day, day, refetch=True)
    assert landed_ids(s) == set(truth.orders)
    got, rows = cleaned(spark, s)
    assert got == truth.orders
    assert all(rows[i].dt == utc_day(by_id[i]) for i in truth.late)


@pytest.mark.parametrize("sort", ["asc", "desc", "none"])
def test_without_a_date_filter_the_first_night_reads_all_and_later_nights_stop(
        spark, shop, sort, caplog):
    orders, truth = inject(ORDERS, DataFaults(late=0.05, late_days=2, dup_days=0.03, seed=4))
    s, now = shop(orders, {"bus_date_filter": "none", "bus_order_sort": sort,
                           "bus_lookback_days": 3})
    # the first night lands the history up to its day; then night by night
    now[0] = dt.datetime.combine(START + dt.timedelta(days=2), dt.time(0, 30))
    with caplog.at_level("INFO", logger="etl.bus"):
        first = pipeline.extract(s, START, START + dt.timedelta(days=1))
    assert "first night: every page" in caplog.text
    later = []
    for n in range(2, DAYS + 2):
        day = START + dt.timedelta(days=n)
        now[0] = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 30))
        later += pipeline.extract(s, day, day)
    assert [m["dt"] for m in first + later] == [
        str(START + dt.timedelta(days=n)) for n in range(1, DAYS + 2)]
    read = [(m["pagesRead"], m["bus"]["pageCount"]) for m in later]
    if sort == "none":
        assert all(got == pages for got, pages in read)  # the order says nothing: all
    else:
        assert any(got < pages for got, pages in read), read  # stopped at what it had
    got, _ = cleaned(spark, s)
    assert got == truth.orders


def test_placeholder_and_too_busy_phones_become_guest_orders(spark, shop):
    busy = [{"id": 900 + n, "date": f"{START}T12:{n:02d}:00", "clientTel": "+7 (916) 000-1122",
             "basket": [{"goodsId": 10001, "quantity": 1, "price": 2.0}]} for n in range(25)]
    orders, truth = inject(ORDERS + busy, DataFaults(placeholder=0.05, seed=6))
    assert len(truth.guests) > 10
    s, now = shop(orders, {"phone_max_orders_per_day": 20})
    nights(s, now, START + dt.timedelta(days=DAYS - 1))
    got, rows = cleaned(spark, s)
    assert got == truth.orders  # their baskets still count (FP-Growth)
    guests = truth.guests | {str(o["id"]) for o in busy}
    assert all(rows[i].user_key is None for i in guests)
    assert sum(rows[i].user_key is not None for i in got) > 300
    reasons = Counter(r.reason for r in clean.read_quarantine(spark, s.root).collect())
    assert reasons["placeholder phone (phone.placeholders): kept as a guest order"] \
        == len(truth.guests)
    n = sum(o["clientTel"] == "+7 (916) 000-1122" for o in orders)  # some got a placeholder
    assert n > 20 and reasons[f"a phone with {n} orders on one day (over "
                              "phone.max_orders_per_day 20): kept as a guest order"] == n
    assert sum(k for r, k in reasons.items() if "orders on one day" in r) == n
    quarantined = " ".join(r.record for r in clean.read_quarantine(spark, s.root).collect())
    assert "456-7890" not in quarantined and "000-1122" not in quarantined  # masked


def test_a_failing_goods_endpoint_keeps_the_last_catalog(spark, shop, caplog):
    s, now = shop(ORDERS)
    nights(s, now, START)
    s_down, now_down = shop(ORDERS, faults=HttpFaults(goods_error_rate=1.0))
    s_down = s_down.replace(warehouse_root=s.warehouse.root)
    now_down[0] = now[0] + dt.timedelta(days=1)
    with caplog.at_level("WARNING", logger="etl.bus"):
        pipeline.extract(s_down, START + dt.timedelta(days=1), START + dt.timedelta(days=1))
    assert f"the last one landed ({START}) stays" in caplog.text
    status = json.loads((s.root / "landing" / "goods" / "_status.json").read_text())
    assert status["failures"] == 1 and status["last_success"] == str(START)
    assert "HTTP 503" in status["last_error"]
    stats = pipeline.clean(s, START, START + dt.timedelta(days=1), spark)
    assert stats["lines_without_catalog_name"] == 0  # names from the catalog kept
