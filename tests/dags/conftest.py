"""A private Airflow for the DAG tests: AIRFLOW_HOME in a temporary folder, SQLite, the
repo's dags/, migrated once per session, used in this process (`dag.test()`) and by the
one real `airflow dags test` subprocess; and a Spark configuration sized for tests.

The environment is set when this file is imported, before any test imports Airflow (which
reads its configuration once, at its first import)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
HOME = Path(tempfile.mkdtemp(prefix="shoprecs-airflow-"))
AIRFLOW_SETTINGS = {
    "AIRFLOW_HOME": str(HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    # Retries start after 1 s instead of 5 min (exponential backoff still applies).
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
}
os.environ.update(AIRFLOW_SETTINGS)

SPARK_DEFAULTS = """\
spark.master                              local[2]
spark.driver.memory                       1g
spark.sql.shuffle.partitions              2
spark.default.parallelism                 2
spark.sql.session.timeZone                UTC
spark.sql.sources.partitionOverwriteMode  dynamic
spark.ui.enabled                          false
spark.ui.showConsoleProgress              false
# A `airflow dags test` task is a fresh JVM running small jobs: the C1 compiler alone warms
# up far sooner; C1's bigger frames need a larger stack for ALS's deep task graphs.
spark.driver.extraJavaOptions             -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss16m
"""


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag():
    """The DAG folder parsed in this process (no metadata DB needed)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))  # examples are off through the environment above


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """The metadata DB migrated; the environment for an `airflow ...` subprocess."""
    spark_conf = tmp_path_factory.mktemp("spark_conf")
    (spark_conf / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPRECS_", "SPARK_CONF_DIR"))}
    env["SPARK_CONF_DIR"] = str(spark_conf)  # the cluster/local switch, by config alone
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stderr[-3000:]}"
    return env


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """`values` in os.environ for the block (what an in-process DAG run's tasks read)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
