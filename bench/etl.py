"""Benchmark of the order-bus extractor (etl/bus.py) against a naive sequential client.

Measures, in one run, the wall time to land ALL of 100,000 generated orders (10 days,
seeded) from the bus simulator into a fresh temporary warehouse, for two scenarios: the
simulator with 20 ms latency per page, and with no injected latency. Clients: the shoprecs
`BusClient` + `extract_orders` (8 and 16 workers) and a sequential one-page-at-a-time
`requests.Session` loop (the baseline); all at 100 orders per page. Prints orders/s, the
speed-up over the sequential client and a line count of what landed, as a Markdown table.

The simulator runs in a separate process (forked after generating the orders, cheroot
with 16 threads), as a real bus would: in the client's process it would compete with the
client for the GIL of a 2-core machine and the figures would measure the simulator too.
`--in-process` serves it from a thread instead, for comparison. Everything is on 127.0.0.1.

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
import sys
import tempfile
import threading
import time
from pathlib import Path

# `python bench/etl.py` puts bench/ first on sys.path, where this file shadows the etl package
sys.path[0] = str(Path(__file__).resolve().parents[1])

import requests  # noqa: E402

from etl.bus import BusClient, extract_orders  # noqa: E402
from etl.generator import GeneratorParams, generate  # noqa: E402
from etl.simulator import HttpFaults, create_app  # noqa: E402
from shoprecs.config import Settings  # noqa: E402
from shoprecs.demo import free_port  # noqa: E402

PARAMS = GeneratorParams(start=dt.date(2024, 1, 1), days=10, orders=100_000,
                         shoppers=20_000, goods=2_000, seed=42)
END = PARAMS.start + dt.timedelta(days=PARAMS.days - 1)
SCENARIOS = [("20 ms latency per page", 20.0), ("no injected latency", 0.0)]
WORKERS = (8, 16)
PER_PAGE = 100
SERVER_THREADS = 16
AUTH = (Settings().bus_user, Settings().bus_password)


def _server(orders, goods, latency_ms: float, port: int):
    from cheroot.wsgi import Server

    app = create_app(orders, goods, user=AUTH[0], password=AUTH[1],
                     faults=HttpFaults(latency_ms=latency_ms))
    return Server(("127.0.0.1", port), app, numthreads=SERVER_THREADS)


def _serve_forever(orders, goods, latency_ms: float, port: int) -> None:
    _server(orders, goods, latency_ms, port).safe_start()


def start_simulator(orders, goods, latency_ms: float, in_process: bool):
    """The simulator on a free loopback port; returns (url, stop)."""
    port = free_port()
    if in_process:
        server = _server(orders, goods, latency_ms, port)
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        stop = server.stop
    else:  # forked: the child shares the generated orders without pickling them
        proc = multiprocessing.get_context("fork").Process(
            target=_serve_forever, args=(orders, goods, latency_ms, port), daemon=True)
        proc.start()

        def stop():
            proc.terminate()
            proc.join(10)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to ~60 s for the app to serialize the orders and listen
        try:
            if requests.get(f"{url}/goods", auth=AUTH, timeout=1).status_code == 200:
                return url, stop
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    stop()
    raise RuntimeError(f"simulator on {url} not ready after 60 s")


def sequential_extract(url: str, out: Path) -> None:
    """The naive baseline: every page of every day, one request at a time, to JSON lines."""
    days = [PARAMS.start + dt.timedelta(n) for n in range(PARAMS.days)]
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

        for day in days:
            for number in range(2, page(day, 1) + 1):  # the last page included
                page(day, number)


def count_lines(paths) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return total


def run_one(url: str, workers: int | None) -> tuple[int, float]:
    """(orders landed, wall seconds) for one client into a fresh warehouse."""
    with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        if workers is None:
            sequential_extract(url, root / "orders.jsonl")
        else:
            client = BusClient(url, *AUTH, per_page=PER_PAGE, workers=workers, timeout=30)
            extract_orders(client, PARAMS.start, END, root)
        seconds = time.perf_counter() - started
        return count_lines(root.rglob("*.jsonl")), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", action="store_true",
                        help="serve the simulator from a thread of this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("urllib3", "etl", "shoprecs", "cheroot", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
    print(f"generating {PARAMS.orders:,} orders over {PARAMS.start}..{END} ...", flush=True)
    orders, goods, _ = generate(PARAMS)
    rows, ok = [], True
    for scenario, latency in SCENARIOS:
        url, stop = start_simulator(orders, goods, latency, args.in_process)
        try:
            base_n, base_s = run_one(url, None)
            rows.append((scenario, "sequential client", 1, base_n, base_s, 1.0))
            for workers in WORKERS:
                n, s = run_one(url, workers)
                rows.append((scenario, "shoprecs client", workers, n, s,
                             (n / s) / (base_n / base_s)))
        finally:
            stop()
    print(f"\nmachine: os.cpu_count()={os.cpu_count()}, {platform.system()} "
          f"{platform.machine()}, Python {platform.python_version()}; simulator: "
          f"{'thread of this process' if args.in_process else 'separate process'}, "
          f"cheroot {SERVER_THREADS} threads, 127.0.0.1\n")
    print("| scenario | client | workers | per-page | orders | seconds | orders/s "
          "| speed-up vs sequential |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scenario, client, workers, n, s, speedup in rows:
        ok &= n == PARAMS.orders
        print(f"| {scenario} | {client} | {workers} | {PER_PAGE} | {n:,} | {s:.2f} "
              f"| {n / s:,.0f} | {speedup:.2f}x |")
    best = {sc: max(r[5] for r in rows if r[0] == sc) for sc, _ in SCENARIOS}
    fastest = max(r[3] / r[4] for r in rows if r[0] == SCENARIOS[1][0] and r[1] != "sequential client")
    print(f"\nevery run landed exactly {PARAMS.orders:,} orders: {'yes' if ok else 'NO'}")
    print(f"target >= 5x sequential at 20 ms latency: best {best[SCENARIOS[0][0]]:.2f}x -> "
          f"{'met' if best[SCENARIOS[0][0]] >= 5 else 'NOT met'}")
    print(f"target >= 5,000 orders/s without injected latency: best {fastest:,.0f} -> "
          f"{'met' if fastest >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
