"""Benchmark of the order-bus extractor (etl/bus.py) against a naive sequential client.

Measures the wall time to land ALL of 100,000 generated orders (10 days, seeded) from the
bus simulator into a fresh temporary warehouse, in two scenarios: 20 ms latency per page
and no injected latency. Clients, all at 100 orders per page: the shoprecs `BusClient` +
`extract_orders` with 8 and 16 workers, and a sequential one-page-at-a-time
`requests.Session` loop (the baseline). Each is run 3 times; the table shows the median
seconds, orders/s, the speed-up over the sequential client and the orders landed (lines
counted, fewest of the 3 runs), then whether the targets are met.

The simulator runs in a separate process (forked after generating the orders; cheroot,
16 threads), as a real bus would: served from a thread of the client's process it competes
with the client for the GIL (and the 2 cores), and the figures would measure it too.
`--in-process` serves it from a thread anyway, for comparison. All on 127.0.0.1.

Then a bus without a server-side date filter (bus.date_filter none), sorted newest first,
oldest first or not at all: what the first night (the whole listing) and a later night
(from the lookback on, stopping at the first older page when sorted) cost.

Run with: make bench-etl   (or: .venv/bin/python bench/etl.py [--in-process])
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:  # run as bench/etl.py, this
    sys.path[0] = str(HERE.parent)  # file would shadow the etl package: use the project root

import requests  # noqa: E402
from cheroot.wsgi import Server  # noqa: E402

from core.bus_profile import BusProfile  # noqa: E402
from core.config import Settings  # noqa: E402
from etl.bus import BusClient, extract_orders  # noqa: E402
from shoprecs.demo import free_port  # noqa: E402
from simulation.generator import GeneratorParams, generate  # noqa: E402
from simulation.simulator import HttpFaults, create_app  # noqa: E402

PARAMS = GeneratorParams(start=dt.date(2024, 1, 1), days=10, orders=100_000,
                         shoppers=20_000, goods=2_000, seed=42)
DAYS = [PARAMS.start + dt.timedelta(n) for n in range(PARAMS.days)]
SCENARIOS = [("20 ms latency per page", 20.0), ("no injected latency", 0.0)]
WORKERS, PER_PAGE, REPEAT, SERVER_THREADS = (8, 16), 100, 3, 16
AUTH = (Settings().bus_user, Settings().bus_password)
SEQUENTIAL = "sequential client"


def _server(orders, goods, latency_ms: float, port: int,
            profile: BusProfile = BusProfile()) -> Server:
    app = create_app(orders, goods, user=AUTH[0], password=AUTH[1],
                     faults=HttpFaults(latency_ms=latency_ms), profile=profile)
    return Server(("127.0.0.1", port), app, numthreads=SERVER_THREADS)


def start_simulator(orders, goods, latency_ms: float, in_process: bool,
                    profile: BusProfile = BusProfile()):
    """The simulator on a free loopback port, answering; returns (url, stop)."""
    port = free_port()
    if in_process:
        server = _server(orders, goods, latency_ms, port, profile)
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        stop = server.stop
    else:  # forked: the child shares the generated orders without pickling them
        proc = multiprocessing.get_context("fork").Process(daemon=True, target=lambda: _server(
            orders, goods, latency_ms, port, profile).safe_start())
        proc.start()

        def stop():
            proc.terminate()
            proc.join(10)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):  # up to ~30 s for the app to serialize the orders and listen
        try:
            if requests.get(f"{url}/goods", auth=AUTH, timeout=1).status_code == 200:
                return url, stop
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stop()
    raise RuntimeError(f"the simulator on {url} did not answer within 30 s")


def sequential_extract(url: str, out: Path) -> None:
    """The naive baseline: every page of every day, one request at a time, to JSON lines."""
    with requests.Session() as session, open(out, "w", encoding="utf-8") as fh:
        session.auth = AUTH

        def page(day: dt.date, number: int) -> int:
            resp = session.get(f"{url}/orders", timeout=30, params={
                "from": day.isoformat(), "to": day.isoformat(), "expand": "basket",
                "page": number, "per-page": PER_PAGE})
            resp.raise_for_status()
            body = resp.json()
            fh.writelines(json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n"
                          for o in body["orders"])
            return body["pageCount"]

        for day in DAYS:
            for number in range(2, page(day, 1) + 1):  # the last page included
                page(day, number)


def run_once(url: str, workers: int | None) -> tuple[int, float]:
    """(orders landed, wall seconds) of one client into a fresh warehouse."""
    with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
        started = time.perf_counter()
        if workers is None:
            sequential_extract(url, Path(tmp, "orders.jsonl"))
        else:
            client = BusClient(url, *AUTH, per_page=PER_PAGE, workers=workers, timeout=30)
            extract_orders(client, DAYS[0], DAYS[-1], Path(tmp))
        seconds = time.perf_counter() - started
        return sum(p.read_bytes().count(b"\n") for p in Path(tmp).rglob("*.jsonl")), seconds


def scenario_rows(scenario: str, latency_ms: float, orders, goods, in_process: bool):
    """One row per client: (scenario, client, workers, orders landed, median seconds)."""
    url, stop = start_simulator(orders, goods, latency_ms, in_process)
    try:
        rows = []
        for client, workers in [(SEQUENTIAL, None)] + [("shoprecs client", w) for w in WORKERS]:
            runs = [run_once(url, workers) for _ in range(REPEAT)]
            rows.append((scenario, client, workers or 1, min(n for n, _ in runs),
                         statistics.median(s for _, s in runs)))
        return rows
    finally:
        stop()


def report(rows, in_process: bool) -> None:
    print(f"\nmachine: os.cpu_count()={os.cpu_count()}, {platform.system()} "
          f"{platform.machine()}, Python {platform.python_version()}; simulator: "
          f"{'a thread of this process' if in_process else 'a separate process'}, cheroot "
          f"{SERVER_THREADS} threads, 127.0.0.1; seconds: median of {REPEAT} runs\n")
    print("| scenario | client | workers | per-page | orders | seconds | orders/s "
          "| speed-up vs sequential |\n|---|---|---:|---:|---:|---:|---:|---:|")
    base = {r[0]: r[4] for r in rows if r[1] == SEQUENTIAL}
    for scenario, client, workers, n, s in rows:
        print(f"| {scenario} | {client} | {workers} | {PER_PAGE} | {n:,} | {s:.2f} "
              f"| {n / s:,.0f} | {base[scenario] / s:.2f}x |")
    ours = [r for r in rows if r[1] != SEQUENTIAL]
    speedup = max(base[r[0]] / r[4] for r in ours if r[0] == SCENARIOS[0][0])
    rate = max(r[3] / r[4] for r in ours if r[0] == SCENARIOS[1][0])
    print(f"\nevery run landed exactly {PARAMS.orders:,} orders (lines counted): "
          f"{'yes' if all(r[3] == PARAMS.orders for r in rows) else 'NO'}")
    print(f"target: shoprecs client >= 5x sequential with 20 ms latency: best {speedup:.2f}x, "
          f"{'met' if speedup >= 5 else 'NOT met'}")
    print(f"target: shoprecs client >= 5,000 orders/s without injected latency: best "
          f"{rate:,.0f}/s, {'met' if rate >= 5000 else 'NOT met'}")


LOOKBACK = 3
SORTS = ("desc", "asc", "none")


def unfiltered_rows(latency_ms: float, orders, goods, in_process: bool) -> list[tuple]:
    """A bus without a date filter (bus.date_filter none), sorted newest first, oldest first
    or not at all: the first night lands days 1-9 (the whole listing read), the next night
    day 10 (from the lookback's first day on; every page when the bus is not sorted).
    Rows: (sort, first night s, orders, pages read, next night s, orders, pages read, pages)."""
    rows = []
    for sort in SORTS:
        profile = BusProfile(date_filter="none", order_sort=sort)
        url, stop = start_simulator(orders, goods, latency_ms, in_process, profile)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
                client = BusClient(url, *AUTH, per_page=PER_PAGE, workers=WORKERS[0],
                                   timeout=30, profile=profile)
                started = time.perf_counter()
                (first,) = extract_orders(client, DAYS[0], DAYS[-2], Path(tmp), lookback=LOOKBACK)
                first_s = time.perf_counter() - started
                started = time.perf_counter()
                (later,) = extract_orders(client, DAYS[-1], DAYS[-1], Path(tmp), lookback=LOOKBACK)
                later_s = time.perf_counter() - started
        finally:
            stop()
        rows.append((sort, first_s, first["orders"], first["pagesRead"], later_s,
                     later["orders"], later["pagesRead"], later["bus"]["pageCount"]))
    return rows


def report_unfiltered(rows, latency_ms: float) -> None:
    print(f"\nno date filter (bus.date_filter none), {latency_ms:g} ms latency per page, "
          f"{WORKERS[0]} workers, lookback {LOOKBACK} days: the first night lands days 1-9, "
          "the next night day 10\n")
    print("| bus.order_sort | first night: s | orders | pages read | next night: s | orders "
          "| pages read of |\n|---|---:|---:|---:|---:|---:|---:|")
    for sort, fs, fo, fp, ls, lo, lp, pages in rows:
        print(f"| {sort} | {fs:.2f} | {fo:,} | {fp:,} | {ls:.2f} | {lo:,} | {lp:,} of "
              f"{pages:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true",
                        help="serve the simulator from a thread of this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("urllib3", "etl", "shoprecs", "cheroot", "werkzeug", "tenacity"):
        logging.getLogger(name).setLevel(logging.WARNING)
    print(f"generating {PARAMS.orders:,} orders over {DAYS[0]}..{DAYS[-1]} ...", flush=True)
    orders, goods, _ = generate(PARAMS)
    rows = [row for scenario, latency in SCENARIOS
            for row in scenario_rows(scenario, latency, orders, goods, args.in_process)]
    report(rows, args.in_process)
    latency = SCENARIOS[0][1]
    report_unfiltered(unfiltered_rows(latency, orders, goods, args.in_process), latency)


if __name__ == "__main__":
    main()
