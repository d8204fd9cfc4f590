"""Benchmark: the large shop's night on a Spark standalone cluster, against local mode.

`make bench-scale` trains the large shop (1,000,000 shoppers, 20,000 goods, 10 million
lines) in local[2] into var/bench/scale/large. This runs the same night — clean, train,
gate + publish, in a fresh process — against a standalone master and worker started on
loopback from the installed pyspark (the harness of `make cluster-test`), chosen by
configuration alone: SHOPRECS_SPARK_MASTER and spark-submit's --executor-memory. Its
warehouse, var/bench/scale/large-cluster, lands the same files (hard links). Then it
compares the two published versions: version, rules (exactly), shoppers, the share of
top-10 recommendations both list, popular goods, catalog, holdout metrics.

Prints wall time, CPU seconds, the peak memory of the driver and the executors together,
and the agreement; writes var/bench/cluster.json.

Run with: make bench-cluster   (after make bench-scale; about an hour on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess

from bench import scale
from pipeline.spark import MASTER_ENV, defaults_file
from tests.cluster.compare import agreement
from tests.cluster.standalone import Standalone, free_port

LOCAL = scale.warehouse(scale.LARGE)
REMOTE = scale.BASE / "large-cluster"
HOME = scale.BASE / "cluster"
OUT = scale.BASE.parent / "cluster.json"


def land_copy() -> None:
    """REMOTE with LOCAL's landed files (hard links) and nothing the night writes."""
    if not (LOCAL / "_LANDED.json").exists():
        raise SystemExit(f"no large shop in {LOCAL}: run make bench-scale first (it lands "
                         "and trains it in local mode)")
    shutil.rmtree(REMOTE, ignore_errors=True)
    REMOTE.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(LOCAL / "landing"), str(REMOTE / "landing")], check=True)
    shutil.copy(LOCAL / "_LANDED.json", REMOTE / "_LANDED.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-memory", default="8g",
                        help="what the worker offers; the executor takes part of it")
    parser.add_argument("--executor-memory", default="6g",
                        help="local mode trains the large shop in a 4g driver heap")
    args = parser.parse_args()
    if not (LOCAL / "serving" / "CURRENT").exists():
        raise SystemExit(f"no published version in {LOCAL}: run make bench-scale first")
    land_copy()
    cluster = Standalone(HOME, port=free_port(), cores=2, memory=args.worker_memory).start()
    try:
        env = {**os.environ, MASTER_ENV: cluster.url, "PYSPARK_SUBMIT_ARGS": (
            f"--properties-file {shlex.quote(str(defaults_file()))} "
            f"--executor-memory {args.executor_memory} pyspark-shell")}
        print(f"the large shop's night on {cluster.url} (executor {args.executor_memory}) "
              f"into {REMOTE} ...", flush=True)
        result, seconds, peak, cpu, cpu_by = scale.measured(
            ["--child", "pipeline", "--scale", scale.LARGE, "--root", str(REMOTE)],
            env=env, also=(cluster.procs["worker"].pid,))
    finally:
        cluster.stop()
    local = json.loads((scale.BASE / "scale.json").read_text())
    local = next((r for r in local if r["scale"] == scale.LARGE), None)
    agreed = agreement(LOCAL, REMOTE)
    row = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "cpu_by": cpu_by,
           "peak_gib": round(peak, 2), "steps": result["steps"], "gate": result["gate"],
           "local_seconds": local and local["seconds"],
           "local_peak_gib": local and local["peak_gib"], "agreement": agreed}
    OUT.write_text(json.dumps(row, indent=1))
    print("\n| mode | wall s | CPU s | peak GiB (driver + executors) | "
          + " | ".join(f"{s} s" for s in result["steps"]) + " |")
    print("|---" * (4 + len(result["steps"])) + "|")
    if local:
        print(f"| local[2] | {local['seconds']} | {local['cpu_seconds']:.0f} | "
              f"{local['peak_gib']} | " + " | ".join(
                  str(local["steps"].get(s, "")) for s in result["steps"]) + " |")
    print(f"| standalone, 1 worker × 2 cores | {seconds:.1f} | {cpu:.0f} | {peak:.2f} | "
          + " | ".join(str(v) for v in result["steps"].values()) + " |")
    print("\nagreement with local mode:", json.dumps(agreed, indent=1))
    same = all(agreed[k] for k in ("same_version", "same_rules", "same_shoppers",
                                   "same_popular", "same_catalog", "same_trained_on"))
    print(f"target: the same recommendations as local mode: "
          f"{'met' if same and agreed['top10_shared'] >= 0.9 else 'NOT met'} "
          f"(top-10 shared {agreed['top10_shared']:.1%}, largest holdout metric "
          f"difference {agreed['metric_max_difference']})")


if __name__ == "__main__":
    main()
