"""Benchmark: Spark ALS fit time against benfred's `implicit` on the same data.

Data: the bench-quality training set (UCI Online Retail through the simulator, extractor
and cleaner; shoppers' orders before 2011-08-01, strength = number of orders). Parameters:
the winners of `make bench-quality`'s validation search (var/bench/quality.json) when it
has run, else the winners recorded in bench/RESULTS.md. Both fits are timed the same way:
one warm-up, then the median of 3, wall time of the fit alone (the ratings are cached and
counted first; implicit gets its CSR matrix ready-made). A night fits ALS in a fresh JVM,
whose JIT is still compiling at the fifth fit; `--warmups 10` times a JVM that has
trained for a while instead (`shoprecs tune`'s later fits).

Also prints which BLAS and LAPACK Spark's ALS found: MKL when `make mkl` installed it
(pipeline/blas.py), else the system's (Debian: libopenblas0-pthread), else pure Java.

A figure to watch, no longer a target (retired): Spark ALS fit against implicit's.

Run with: make bench-als   (or: .venv/bin/python -m bench.als [--blocks 0 1 2] [--warmups N])
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time

from bench import retail_data
from etl.clean import read_clean
from models import als, ids
from models.train import split
from pipeline.spark import get_spark

TRAIN_CUT, TEST_END = dt.date(2011, 8, 1), dt.date(2011, 9, 30)
QUALITY = retail_data.ROOT / "var" / "bench" / "quality.json"
# bench-quality's validation winners on 2026-11-24 (bench/RESULTS.md)
SPARK_PARAMS = {"rank": 64, "reg_param": 0.1, "alpha": 1.0, "max_iter": 5, "strength": "count"}
IMPLICIT_PARAMS = {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 10}
REPEAT, TARGET = 3, 10.0


def tuned() -> tuple[dict, dict, str]:
    """(Spark ALS params, implicit params, where they came from)."""
    if QUALITY.exists():
        rows = json.loads(QUALITY.read_text())["rows"]
        spark = {k: v for k, v in rows["Spark ALS, tuned"]["params"].items()
                 if k in als.ALSParams.__dataclass_fields__ and k not in ("blocks", "top_k")}
        ref = rows.get("implicit ALS (reference)", {}).get("params") or IMPLICIT_PARAMS
        return spark, ref, str(QUALITY)
    return SPARK_PARAMS, IMPLICIT_PARAMS, "bench/RESULTS.md (run make bench-quality to re-tune)"


def median_seconds(fit, warmups: int = 1) -> tuple[float, list[float]]:
    warm = []
    for _ in range(warmups):
        started = time.perf_counter()
        fit()
        warm.append(time.perf_counter() - started)
    print(f"  untimed fits: {', '.join(f'{w:.2f}' for w in warm)} s", flush=True)
    runs = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        fit()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), runs


def native_libraries(spark) -> str:
    jvm = spark.sparkContext._jvm
    blas = jvm.dev.ludovic.netlib.blas.NativeBLAS
    lapack = jvm.dev.ludovic.netlib.lapack.NativeLAPACK

    def name(kind, cls) -> str:
        try:
            cls.getInstance()
        except Exception:  # py4j wraps the JVM's "no native library" error
            return f"none (Spark uses Java {kind})"
        path = jvm.java.lang.System.getProperty(f"dev.ludovic.netlib.{kind.lower()}.nativeLibPath")
        return path or f"the system's lib{kind.lower()}.so.3"

    return f"native BLAS: {name('BLAS', blas)}, native LAPACK: {name('LAPACK', lapack)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1],
                        help="ALS user/item blocks to time (0: one per core, the default)")
    parser.add_argument("--warmups", type=int, default=1,
                        help="untimed fits of each model before the 3 timed ones (default 1)")
    args = parser.parse_args()
    spark_params, implicit_params, source = tuned()

    spark = get_spark("shoprecs-bench-als")
    spark.sparkContext.setLogLevel("ERROR")
    try:
        retail_data.prepare(spark)
        lines = read_clean(spark, retail_data.WAREHOUSE, retail_data.START, TEST_END)
        users = ids.extend(None, lines.select("user_key")).cache()
        items = ids.extend(None, lines.select("goods_id")).cache()
        before, _, _ = split(lines, TRAIN_CUT, TEST_END)
        ratings = als.ratings(before, users, items, spark_params["strength"]).cache()
        n = ratings.count()
        print(f"{n:,} (shopper, goods) pairs before {TRAIN_CUT}; params from {source}",
              flush=True)

        rows = []
        for blocks in args.blocks:
            params = als.ALSParams(**spark_params, blocks=blocks)
            print(f"Spark ALS, blocks {blocks or 'per core'} ...", flush=True)
            rows.append((f"Spark ALS {spark_params}, blocks "
                         f"{blocks or spark.sparkContext.defaultParallelism}",
                         *median_seconds(lambda p=params: als.train(ratings, p), args.warmups)))

        import scipy.sparse as sp
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        pairs = ratings.toPandas()
        matrix = sp.csr_matrix((pairs["strength"].astype("float32"),
                                (pairs["user"], pairs["item"])))

        def fit_implicit():
            model = AlternatingLeastSquares(**implicit_params, random_state=42)
            model.fit(matrix, show_progress=False)

        print("implicit ALS ...", flush=True)
        with threadpool_limits(1, "blas"):  # implicit asks for it; it runs its own threads
            ref = median_seconds(fit_implicit, args.warmups)
        rows.append((f"implicit ALS {implicit_params}", *ref))

        sc = spark.sparkContext
        print(f"\nmachine: os.cpu_count()={os.cpu_count()}, {platform.system()} "
              f"{platform.machine()}, Python {platform.python_version()}, pyspark "
              f"{spark.version}, master {sc.master}, {args.warmups} untimed fit(s) of "
              f"each before the timed ones, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {native_libraries(spark)}\n")
        print("| model | fit seconds (median) | runs | × implicit |\n|---|---:|---|---:|")
        for label, median, runs in rows:
            print(f"| {label} | {median:.2f} | {', '.join(f'{r:.2f}' for r in runs)} "
                  f"| {median / ref[0]:.1f}× |")
        best = min(rows[:-1], key=lambda r: r[1])
        ratio = best[1] / ref[0]
        default = rows[0][1] / ref[0] if args.blocks[0] == 0 else None
        print(f"\nSpark ALS fit against implicit's (a retired target): best {best[1]:.2f} s "
              f"vs {ref[0]:.2f} s = {ratio:.1f}x"
              + (f"; default blocks {default:.1f}x" if default is not None else ""))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
