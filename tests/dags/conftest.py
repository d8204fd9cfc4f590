"""A private Airflow for the DAG tests: AIRFLOW_HOME under tmp, SQLite, the repo's dags/,
migrated once per session; and a Spark configuration sized for tests (local[2])."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

SPARK_DEFAULTS = """\
spark.master                              local[2]
spark.driver.memory                       1g
spark.sql.shuffle.partitions              2
spark.default.parallelism                 2
spark.sql.session.timeZone                UTC
spark.sql.sources.partitionOverwriteMode  dynamic
spark.ui.enabled                          false
spark.ui.showConsoleProgress              false
# Each `airflow dags test` is a fresh JVM running small jobs: the C1 compiler alone warms up
# far sooner (about 90 s instead of 130-150 s a night, measured on 2 busy cores); C1's bigger
# frames need a larger stack for ALS's deep task graphs.
spark.driver.extraJavaOptions             -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss16m
"""


@pytest.fixture(scope="session")
def dagbag(tmp_path_factory):
    """The DAG folder parsed in this process (no metadata DB needed)."""
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_parse")))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))  # examples are off through the environment above


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """Environment for `airflow ...` subprocesses; the metadata DB is migrated."""
    home = tmp_path_factory.mktemp("airflow_home")
    spark_conf = tmp_path_factory.mktemp("spark_conf")
    (spark_conf / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOPRECS_", "AIRFLOW_", "AIRFLOW__", "SPARK_CONF_DIR"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Retries start after 1 s instead of 5 min (exponential backoff still applies).
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
        "SPARK_CONF_DIR": str(spark_conf),  # the cluster/local switch, by config alone
    })
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stderr[-3000:]}"
    return env
