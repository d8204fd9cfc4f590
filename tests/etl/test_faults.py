"""The bus misbehaves; extraction and cleaning still land every order exactly once."""
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import parse_qs

import pytest

from etl import clean
from etl.bus import BusClient, extract
from simulation import simulator
from simulation.faults import DataFaults, inject
from simulation.generator import GeneratorParams, generate
from simulation.simulator import HttpFaults

START, END = dt.date(2024, 2, 1), dt.date(2024, 2, 3)
PARAMS = GeneratorParams(start=START, days=3, orders=400, shoppers=80, goods=60, clusters=3,
                         items_per_cluster=15, bundles=4, seed=11)
ORDERS, GOODS, _ = generate(PARAMS)


def landed(root) -> Counter:
    """Every landed order line as text, counted: duplicates would show as counts > 1."""
    files = (root / "landing" / "orders").glob("dt=*/orders.jsonl")
    return Counter(line for f in files for line in f.read_text().splitlines())


def served(orders) -> Counter:
    return Counter(json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in orders)


HTTP_FAULTS = {
    "latency": HttpFaults(latency_ms=20),
    "5xx": HttpFaults(error_rate=0.2, seed=1),
    "429": HttpFaults(throttle_rate=0.1, retry_after_s=1, seed=2),
    "dropped connections": HttpFaults(drop_rate=0.2, seed=3),
    "truncated JSON": HttpFaults(truncate_rate=0.2, seed=4),
}


@pytest.mark.parametrize("name", HTTP_FAULTS)
def test_http_faults_lose_and_double_nothing(bus, name):
    s = bus(ORDERS, GOODS, HTTP_FAULTS[name]).replace(bus_per_page=25,
                            bus_retries=6)
    manifests = extract(BusClient.from_settings(s.bus), START, END, s.root)
    assert landed(s.root) == served(ORDERS)
    assert sum(m["orders"] for m in manifests) == len(ORDERS)
    assert all(m["pages"] == m["bus"]["pageCount"] for m in manifests)


DATA_FAULTS = {f.name: DataFaults(**{f.name: 0.15}) for f in dataclasses.fields(DataFaults)
               if f.name != "seed"}
DATA_FAULTS["all, over a misbehaving bus"] = DataFaults.all(0.1, seed=5)


@pytest.mark.spark
@pytest.mark.parametrize("name", DATA_FAULTS)
def test_cleaned_data_is_exactly_the_ground_truth(spark, bus, name):
    orders, truth = inject(ORDERS, DATA_FAULTS[name])
    http = HttpFaults(error_rate=0.05, throttle_rate=0.02, retry_after_s=0, drop_rate=0.05,
                      truncate_rate=0.05, seed=9) if name.startswith("all") else None
    s = bus(orders, GOODS, http).replace(bus_per_page=30, bus_retries=6)
    last = END + dt.timedelta(days=1)  # orders re-sent the day after the last one
    extract(BusClient.from_settings(s.bus), START, last, s.root)
    clean.run(spark, s, START, last)
    got: dict[str, dict[str, int]] = {}
    for row in clean.read_clean(spark, s.root, START, last).collect():
        got.setdefault(row.order_id, {})[row.goods_id] = row.quantity
    assert got == truth.orders  # none lost, none doubled, latest version of each
    quarantined = clean.read_quarantine(spark, s.root).collect()
    line = ("line ", "quantity")
    whole = {str(json.loads(r.record).get("id")) for r in quarantined
             if r.reason != "unparseable record" and not r.reason.startswith(line)}
    lined = {str(json.loads(r.record)["order_id"]) for r in quarantined
             if r.reason.startswith(line)}
    if name == "bad_orders":  # exactly the orders broken whole
        assert truth.quarantined_orders and whole == truth.quarantined_orders
    if name == "bad_lines":  # exactly the orders with a broken line; the rest kept above
        assert truth.bad_lines and lined == truth.bad_lines
    if name.startswith("all"):  # other days' copies of an order may add to these
        assert truth.quarantined_orders and whole >= truth.quarantined_orders
        assert truth.bad_lines and lined >= truth.bad_lines


def test_killed_run_resumes_without_refetching_or_doubling(bus, tmp_path, monkeypatch):
    asked: list[tuple[str, int]] = []  # (day, page) of every /orders request
    real = simulator.create_app

    def counting(*args, **kwargs):
        app = real(*args, **kwargs)

        def wsgi(environ, start_response):
            if environ["PATH_INFO"] == "/orders":
                query = parse_qs(environ.get("QUERY_STRING", ""))
                asked.append((query["from"][0], int(query.get("page", ["1"])[0])))
            return app(environ, start_response)
        return wsgi

    monkeypatch.setattr(simulator, "create_app", counting)
    s = bus(ORDERS, GOODS, HttpFaults(latency_ms=60))
    env = {**os.environ, "SHOPRECS_BUS_URL": s.bus.url,
           "SHOPRECS_WAREHOUSE_ROOT": str(s.root), "SHOPRECS_BUS_PER_PAGE": "5",
           "SHOPRECS_BUS_WORKERS": "2", "SHOPRECS_PRIVACY_HMAC_KEY": "k"}
    cmd = [sys.executable, "-m", "shoprecs.cli", "extract", "--from", str(START), "--to", str(END)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    parts = s.root / "landing" / "orders"
    deadline = time.monotonic() + 60
    while len(list(parts.glob("dt=*/_parts/page-*.jsonl"))) < 15:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = {(p.parent.parent.name[3:], int(p.stem[5:]))
             for p in parts.glob("dt=*/_parts/page-*.jsonl")}
    assert saved and not list(parts.glob("dt=*/_manifest.json"))  # killed mid-way
    before = len(asked)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert landed(s.root) == served(ORDERS)
    # no checkpointed page is asked for again (page 1 is, for the day's page count)
    assert not {(d, p) for d, p in asked[before:] if p > 1} & saved
    assert not list(parts.glob("dt=*/_parts"))  # checkpoints cleaned up once assembled
