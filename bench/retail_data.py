"""UCI Online Retail, landed and cleaned by the product itself, for the benchmarks.

The CSV from ../shared/data/online-retail goes through the bus simulator (in-process, no
faults), the extractor and the Spark cleaner into a warehouse under var/bench/retail/,
once: later runs find its `_PREPARED` marker and reuse it. Benchmarks then read
`clean/orders` like the nightly job does.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHOPRECS_ONLINE_RETAIL", ROOT.parent / "shared" / "data"
                           / "online-retail" / "online-retail-2010-12-01_2011-09-30.csv.gz"))
WAREHOUSE = ROOT / "var" / "bench" / "retail"
START, END = dt.date(2010, 12, 1), dt.date(2011, 9, 30)
HMAC_KEY = "bench-online-retail"


def settings():
    from core.config import Settings

    return Settings().replace(warehouse_root=str(WAREHOUSE),
                               privacy_hmac_key=HMAC_KEY, bus_per_page=1000, bus_workers=8)


def require_data() -> Path:
    if not DATA.exists():
        sys.exit(f"Online Retail data not found at {DATA}: put ../shared beside the checkout "
                 "or set SHOPRECS_ONLINE_RETAIL to the .csv.gz")
    return DATA


def land(root: Path) -> dict:
    """Land the whole file into the warehouse at `root` through the bus simulator and the
    extractor, as the nightly job would have day by day; return {"orders", "lines"}."""
    from etl.bus import BusClient, extract
    from shoprecs.demo import free_port, start_simulator
    from simulation.retail import load_retail

    orders, goods = load_retail(require_data())
    s = settings().replace(warehouse_root=str(root),
                            bus_url=f"http://127.0.0.1:{free_port()}")
    print(f"landing {len(orders):,} Online Retail orders through the simulator ...", flush=True)
    server = start_simulator(orders, goods, s)
    try:
        extract(BusClient.from_settings(s.bus), START, END, root)
    finally:
        server.stop()
    return {"orders": len(orders), "lines": sum(len(o["basket"]) for o in orders)}


def prepare(spark) -> Path:
    """Land and clean the whole file once; return the warehouse root."""
    marker = WAREHOUSE / "_PREPARED"
    if marker.exists():
        return WAREHOUSE
    from etl import clean

    land(WAREHOUSE)
    print("cleaning them with Spark ...", flush=True)
    clean.run(spark, settings(), START, END)
    marker.write_text("")
    return WAREHOUSE
