"""The one place that builds a SparkSession for the pipeline's entry points.

Code sets only the application name: master, memory and partitions come from
`spark-defaults.conf` at the repository top, or from `$SPARK_CONF_DIR/spark-defaults.conf`
when the operator sets SPARK_CONF_DIR. One knob overrides the file's `spark.master` without
editing it: the environment variable SHOPRECS_SPARK_MASTER (`local[2]`,
`spark://host:7077`, `yarn`, `k8s://https://host:443`).

The repository's file reaches Spark as the session's settings, not through SPARK_CONF_DIR:
Spark puts that directory on the driver's class path, and a JVM refuses its AOT cache when
the class path holds a non-empty directory (shoprecs/jvm.py, which also picks the Java
that runs the driver).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
MASTER_ENV = "SHOPRECS_SPARK_MASTER"


def configure_environment() -> None:
    """Point Spark at the driver's Java runtime and at this Python interpreter."""
    from shoprecs import blas, jvm

    if (home := jvm.java_home()) is not None:
        os.environ["JAVA_HOME"] = str(home)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if _on_this_machine(configured_master()):
        # Bind the driver to loopback (no hostname lookup). Executors on other machines
        # must reach the driver, so a remote master leaves the address to Spark.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Spark's ALS solves through MKL (shoprecs/blas.py) or the system's OpenBLAS: one thread
    # per call, as Spark already runs a task per core (spark-defaults.conf sets the
    # executors').
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for key, value in blas.ENVIRONMENT.items():
        os.environ.setdefault(key, value)


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


def defaults_file() -> Path:
    """The spark-defaults.conf sessions get: $SPARK_CONF_DIR's, else the repository's."""
    return Path(os.environ.get("SPARK_CONF_DIR", REPO_ROOT)) / "spark-defaults.conf"


def defaults() -> dict[str, str]:
    """Every setting of defaults_file(), {} when there is none."""
    conf = defaults_file()
    text = conf.read_text() if conf.exists() else ""
    # Java properties syntax, as Spark reads it: `key value`, `key=value` or `key: value`
    pairs = re.findall(r"^[ \t]*([^#!\s=:]+)[ \t]*[=: \t][ \t]*(\S.*?)[ \t]*$", text, re.M)
    return dict(pairs)


def configured(key: str) -> str | None:
    """`key`'s value in defaults_file(), or None."""
    return defaults().get(key)


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


def _joined(current: str | None, value: str) -> str:
    """Java options `current` followed by `value`."""
    return f"{current} {value}" if current else value


def native_blas_options(master: str, options: dict[str, str]) -> dict[str, str]:
    """`options` with netlib pointed at MKL (shoprecs/blas.py) for the driver, and for the
    executors when they run on this machine (a cluster's nodes have their own paths):
    unchanged when MKL is not installed or the driver's options already configure netlib.
    The MKL options follow the Java options already set, in `options` or in the file."""
    from shoprecs import blas

    current = {**defaults(), **options}
    present = " ".join(current.get(k, "") for k in (
        "spark.driver.extraJavaOptions", "spark.driver.defaultJavaOptions"))
    if native := blas.java_options(present):
        options = dict(options)
        for role in ("driver", "executor") if _on_this_machine(master) else ("driver",):
            key = f"spark.{role}.defaultJavaOptions"
            options[key] = _joined(current.get(key), native)
    return options


def session_options(master: str) -> dict[str, str]:
    """Settings of a session on `master` beyond code: the repository's spark-defaults.conf
    (Spark reads an operator's SPARK_CONF_DIR itself), local_options, MKL for ALS
    (native_blas_options), and the driver's AOT cache when built for this runtime and
    class path (shoprecs/jvm.py)."""
    from shoprecs import jvm

    if "SPARK_CONF_DIR" in os.environ:  # on the class path: Spark reads it, no cache
        return native_blas_options(master, local_options(master))
    options = native_blas_options(master, {**defaults(), **local_options(master)})
    home = os.environ.get("JAVA_HOME")
    if aot := jvm.driver_options(Path(home) if home else None,
                                 options.get("spark.driver.extraClassPath", ""),
                                 options.get("spark.driver.extraJavaOptions", "")):
        key = "spark.driver.defaultJavaOptions"  # the file's are in `options` already
        options[key] = _joined(options.get(key), aot)
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
    options = session_options(configured_master())
    for key, value in options.items():
        builder = builder.config(key, value)
    # Configuration, not code: the operator's environment picks the cluster, so the same
    # command runs in local mode on a laptop and on a cluster at night.
    if (master := master_override()) is not None:
        builder = builder.master(master)
    session = builder.getOrCreate()
    _log_runtime(session, options.get("spark.driver.defaultJavaOptions", ""))
    return session


def _why_no_cache() -> str:
    from shoprecs import jvm

    home = os.environ.get("JAVA_HOME")
    if os.environ.get(jvm.TRAINING_ENV):
        return "this is the training run that writes it"
    if "SPARK_CONF_DIR" in os.environ:
        return "SPARK_CONF_DIR is on its class path"
    if not home:
        return f"it runs the java on PATH (SHOPRECS_JAVA_HOME can name a JDK {jvm.AOT_MIN_VERSION})"
    if jvm.cache_path(Path(home)) is None:
        return f"its Java is older than {jvm.AOT_MIN_VERSION}"
    return ("none is built for this runtime, pyspark and driver options: "
            "`python -m shoprecs.jvm` builds it")


def _log_runtime(session, java_options: str) -> None:
    from shoprecs import jvm

    home = os.environ.get("JAVA_HOME") or "the java on PATH"
    if "AOTCache=" not in java_options:
        log.info("Spark driver on %s, without an AOT cache: %s", home, _why_no_cache())
    elif jvm.in_use(session):
        log.info("Spark driver on %s, started from its AOT cache", home)
    else:
        log.warning("the Spark driver on %s did not use its AOT cache (%s): the JVM refused "
                    "it, so the night runs slower to warm up; rebuild it with "
                    "`python -m shoprecs.jvm --force`", home, java_options)


@contextlib.contextmanager
def spark_session(app_name: str, stop: bool = True):
    """A session that is stopped on exit, even when the job fails."""
    spark = get_spark(app_name)
    try:
        yield spark
    finally:
        if stop:
            spark.stop()
