"""The one place that builds a SparkSession for the pipeline's entry points.

Code sets only the application name: master, memory and partitions come from
`spark-defaults.conf` at the repository top (found through SPARK_CONF_DIR, which we point
there unless the operator already set it) or from `spark-submit`.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def configure_environment() -> None:
    """Point Spark at the project's configuration and at this Python interpreter."""
    if (REPO_ROOT / "spark-defaults.conf").exists():
        os.environ.setdefault("SPARK_CONF_DIR", str(REPO_ROOT))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # With the system's OpenBLAS installed, Spark's ALS solves through it: one thread per
    # call, as Spark already runs a task per core (spark-defaults.conf sets the executors').
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def get_spark(app_name: str):
    """Get or create the session named `app_name` (configuration from spark-defaults.conf)."""
    configure_environment()
    from pyspark.sql import SparkSession

    return SparkSession.builder.appName(app_name).getOrCreate()


@contextlib.contextmanager
def spark_session(app_name: str, stop: bool = True):
    """A session that is stopped on exit, even when the job fails."""
    spark = get_spark(app_name)
    try:
        yield spark
    finally:
        if stop:
            spark.stop()
