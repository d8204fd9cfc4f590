"""The one place that builds a SparkSession for the pipeline's entry points.

Code sets only the application name: master, memory and partitions come from
`spark-defaults.conf` at the repository top (found through SPARK_CONF_DIR, which we point
there unless the operator already set it) or from `spark-submit`. One knob overrides the
file's `spark.master` without editing it: the environment variable SHOPRECS_SPARK_MASTER
(`local[2]`, `spark://host:7077`, `yarn`, `k8s://https://host:443`).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MASTER_ENV = "SHOPRECS_SPARK_MASTER"


def configure_environment() -> None:
    """Point Spark at the project's configuration and at this Python interpreter."""
    if (REPO_ROOT / "spark-defaults.conf").exists():
        os.environ.setdefault("SPARK_CONF_DIR", str(REPO_ROOT))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if _on_this_machine(configured_master()):
        # Bind the driver to loopback (no hostname lookup). Executors on other machines
        # must reach the driver, so a remote master leaves the address to Spark.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # With the system's OpenBLAS installed, Spark's ALS solves through it: one thread per
    # call, as Spark already runs a task per core (spark-defaults.conf sets the executors').
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def master_override() -> str | None:
    """The master SHOPRECS_SPARK_MASTER names, or None to keep spark-defaults.conf's."""
    master = os.environ.get(MASTER_ENV, "").strip()
    return master or None


def configured_master() -> str:
    """The master a session will get: SHOPRECS_SPARK_MASTER, else spark.master of
    $SPARK_CONF_DIR/spark-defaults.conf, else Spark's default, local[*]."""
    if (master := master_override()) is not None:
        return master
    return configured("spark.master") or "local[*]"


def configured(key: str) -> str | None:
    """`key`'s value in $SPARK_CONF_DIR/spark-defaults.conf, or None."""
    conf = Path(os.environ.get("SPARK_CONF_DIR", REPO_ROOT)) / "spark-defaults.conf"
    text = conf.read_text() if conf.exists() else ""
    # Java properties syntax, as Spark reads it: `key value`, `key=value` or `key: value`
    found = re.findall(rf"^[ \t]*{re.escape(key)}[ \t]*[=: \t][ \t]*(\S.*?)[ \t]*$", text,
                       re.M)
    return found[-1] if found else None


def local_options(master: str) -> dict[str, str]:
    """Settings for a session on `master` beyond spark-defaults.conf: in local mode, the
    file system of shoprecs.localfs when built (its jar joins any configured driver
    class path), unless the operator's spark-defaults.conf names a file system of its own
    for file:// (spark.hadoop.fs.file.impl)."""
    from shoprecs import localfs

    options = localfs.spark_options(master)
    if configured("spark.hadoop.fs.file.impl"):
        return {}
    key = "spark.driver.extraClassPath"
    if key in options and (extra := configured(key)):
        options[key] = f"{extra}{os.pathsep}{options[key]}"
    return options


def _on_this_machine(master: str) -> bool:
    return master.startswith("local") or any(
        f"://{host}" in master for host in ("127.0.0.1", "localhost", "[::1]"))


def get_spark(app_name: str):
    """Get or create the session named `app_name` (configuration from spark-defaults.conf,
    its master overridden by SHOPRECS_SPARK_MASTER when that is set)."""
    configure_environment()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    # Configuration, not code: the operator's environment picks the cluster, so the same
    # command runs in local mode on a laptop and on a cluster at night.
    if (master := master_override()) is not None:
        builder = builder.master(master)
    for key, value in local_options(configured_master()).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@contextlib.contextmanager
def spark_session(app_name: str, stop: bool = True):
    """A session that is stopped on exit, even when the job fails."""
    spark = get_spark(app_name)
    try:
        yield spark
    finally:
        if stop:
            spark.stop()
