"""The one place that starts a SparkSession for the pipeline's entry points.

Code sets only the application name; the rest is Spark's own configuration, read by
Spark's launcher the way `spark-submit` reads it:

* `spark-defaults.conf` at the repository top (a regular install puts it in
  `<prefix>/share/shoprecs/`) is the launcher's properties file (`--properties-file`,
  passed in PYSPARK_SUBMIT_ARGS, which pyspark hands to spark-submit);
* an operator's SPARK_CONF_DIR or PYSPARK_SUBMIT_ARGS, or a job started by spark-submit,
  wins: shoprecs then adds nothing and Spark reads theirs;
* SHOPRECS_SPARK_MASTER overrides the master alone (`local[2]`, `spark://host:7077`,
  `yarn`, `k8s://https://host:443`), so the same command runs on a laptop and on a
  cluster.

The driver runs on the Java Spark finds: JAVA_HOME, else `java` on PATH; 17 or newer.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from core.errors import OperatorError, Unreachable

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
MASTER_ENV = "SHOPRECS_SPARK_MASTER"
DEFAULTS = "spark-defaults.conf"
MIN_JAVA = 17


class JavaMissing(OperatorError, RuntimeError):
    """No Java runtime Spark could start, or one older than MIN_JAVA: the machine's
    configuration (exit code 3)."""

    code = 3


def defaults_file(prefix: Path = Path(sys.prefix)) -> Path | None:
    """The project's spark-defaults.conf: the checkout's, else the installed copy."""
    paths = (REPO_ROOT / DEFAULTS, prefix / "share" / "shoprecs" / DEFAULTS)
    return next((path for path in paths if path.is_file()), None)


def master_override() -> str | None:
    """The master SHOPRECS_SPARK_MASTER names, or None to keep the configured one."""
    return os.environ.get(MASTER_ENV, "").strip() or None


def check_master(master: str | None, timeout: float = 5.0) -> None:
    """Unreachable at once when no host of a standalone master (`spark://h1:7077,h2:7077`)
    accepts a connection, instead of Spark's minute of retries and pages of log."""
    if not master or not master.startswith("spark://"):
        return  # local, yarn and k8s masters are Spark's to reach
    reason = None
    for host_port in master.removeprefix("spark://").split(","):
        host, _, port = host_port.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError) as exc:
            reason = exc
    raise Unreachable(f"the Spark master {master} is unreachable ({reason}): check "
                      f"{MASTER_ENV} (or spark.master) and that the master is up")


def java_version(java_home: str | None = None) -> int:
    """The major version of the Java Spark will run: JAVA_HOME's, else PATH's."""
    home = java_home if java_home is not None else os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise JavaMissing(f"Spark needs Java {MIN_JAVA} or newer and found none: set "
                          "JAVA_HOME or put java on PATH (Debian: apt-get install "
                          "openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        raise JavaMissing(f"cannot tell the version of {java}: {out.strip()[:200]}")
    major = int(found.group(1))
    major = int(found.group(2)) if major == 1 else major  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise JavaMissing(f"{java} is Java {major}; Spark needs {MIN_JAVA} or newer: point "
                          "JAVA_HOME at one")
    return major


def configure_environment() -> None:
    """This interpreter for Spark's Python workers, the project's spark-defaults.conf for
    the launcher unless the operator configured Spark, and MKL when installed."""
    from pipeline import blas

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if not {"SPARK_CONF_DIR", "PYSPARK_SUBMIT_ARGS"} & set(os.environ):
        conf = defaults_file()
        if conf is not None:
            os.environ["PYSPARK_SUBMIT_ARGS"] = (
                f"--properties-file {shlex.quote(str(conf))} pyspark-shell")
    blas.configure_environment()


def get_spark(app_name: str):
    """Get or create the session named `app_name`: Spark's configuration, its master
    overridden by SHOPRECS_SPARK_MASTER when that is set."""
    java = java_version()
    configure_environment()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if (master := master_override()) is not None:
        check_master(master)
        builder = builder.master(master)
    session = builder.getOrCreate()
    log.info("Spark %s on Java %d, master %s, configured by %s", session.version, java,
             session.sparkContext.master, _configured_by())
    return session


def _configured_by() -> str:
    if "SPARK_CONF_DIR" in os.environ:
        return f"SPARK_CONF_DIR={os.environ['SPARK_CONF_DIR']}"
    return os.environ.get("PYSPARK_SUBMIT_ARGS", "Spark's defaults")


@contextlib.contextmanager
def spark_session(app_name: str):
    """The session this process already runs (a night's, a test's: its owner stops it),
    else a new one, stopped on exit even when the job fails."""
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    if running is not None:
        yield running
        return
    spark = get_spark(app_name)
    try:
        yield spark
    finally:
        spark.stop()
