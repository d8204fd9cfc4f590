"""Benchmark: the large shop published into MongoDB and served from it (a real server).

Needs MONGO_URI (mongodb://host:27017/...) and the large shop trained by `make
bench-scale` (var/bench/scale/large); without MONGO_URI it prints "skipped: no MONGO_URI"
and exits 0 (the store's logic is tested on mongomock: tests/engine/test_mongo.py).

1. `shoprecs publish --store mongo --version V` into a fresh database, killed (SIGKILL)
   after --kill-after seconds; then published again, which must resume past the result
   sets the first attempt finished (its log says which) and complete. Both times printed.
2. `shoprecs serve --workers 2` with service.store = mongo: req/s and p99 at 1,000
   requests/s offered, known shoppers' plain recommendations. Target: p99 < 20 ms.

The database (--db, default shoprecs_bench) is dropped first and left for inspection.

Run with: make bench-mongo   (MONGO_URI=mongodb://... ; after make bench-scale)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from bench import scale

TARGET_P99_MS = 20


def publish(env: dict, version: str, log_path, kill_after: float | None = None
            ) -> tuple[float, int | None]:
    """(seconds, exit code, None when killed) of one `shoprecs publish --store mongo`."""
    started = time.perf_counter()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shoprecs.cli", "publish", "--store",
                                 "mongo", "--skip-gate", "--version", version], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, as a crash would
            proc.wait()
            code = None
    return time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="shoprecs_bench")
    parser.add_argument("--kill-after", type=float, default=120.0,
                        help="seconds into the first publish to kill it")
    args = parser.parse_args()
    uri = os.environ.get("MONGO_URI")
    if not uri:
        print("skipped: no MONGO_URI (set it to a MongoDB server, e.g. "
              "MONGO_URI=mongodb://127.0.0.1:27017, to publish the large shop there and "
              "serve from it)")
        return
    root = scale.warehouse(scale.LARGE)
    if not (root / "serving" / "CURRENT").exists():
        raise SystemExit(f"no large shop trained in {root}: run make bench-scale first")
    from pymongo import MongoClient

    from bench import serve
    from engine import current_version
    from shoprecs.demo import free_port

    version = current_version(root)
    MongoClient(uri).drop_database(args.db)
    env = {**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(root), "SHOPRECS_MONGO_URI": uri,
           "SHOPRECS_MONGO_DB": args.db, "SHOPRECS_SERVICE_URL": "",
           "SHOPRECS_PRIVACY_HMAC_KEY": scale.settings_for(root).privacy.hmac_key}
    logs = scale.BASE / "mongo"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"publishing {version} into {args.db}, killed after {args.kill_after:.0f} s ...",
          flush=True)
    killed_s, code = publish(env, version, logs / "publish-killed.log", args.kill_after)
    print(f"first attempt: {killed_s:.1f} s, "
          f"{'killed' if code is None else f'exit code {code} (finished before the kill)'}",
          flush=True)
    print("publishing again (resumes) ...", flush=True)
    resumed_s, code = publish(env, version, logs / "publish-resumed.log")
    if code != 0:
        raise SystemExit(f"the resumed publish exited with {code}: see "
                         f"{logs / 'publish-resumed.log'}")
    resumed = [line for line in (logs / "publish-resumed.log").read_text().splitlines()
               if "resuming" in line or "not written again" in line]
    print(f"resumed publish: {resumed_s:.1f} s\n" + "\n".join(resumed), flush=True)

    orders = scale.sample_orders(root)
    port = free_port()
    server = serve.start_server(root, port, 2, logs / "serve.log", workers=2, events=False,
                                env={**env, "SHOPRECS_SERVICE_STORE": "mongo"})
    try:
        plain = serve.traffic(root, orders, only="users")
        serve.run_load(port, plain, 5, 32)  # warm-up: the LRUs
        result = serve.run_load(port, plain, 10, 32, rate=1000)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps({"killed_after_s": round(killed_s, 1), "resumed_s": round(resumed_s, 1),
                      "serve": result}, indent=1))
    p99 = result.get("p99_ms")
    print(f"target: p99 < {TARGET_P99_MS} ms at 1,000 req/s from MongoDB: {p99} ms, "
          f"{'met' if p99 is not None and p99 < TARGET_P99_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
