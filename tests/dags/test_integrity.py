"""The DAG folder imports cleanly in Airflow and chains the nightly steps."""
import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["shoprecs_daily"]


def test_task_graph(dagbag):
    dag = dagbag.dags["shoprecs_daily"]  # get_dag() would ask the metadata DB
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {("extract", "clean"), ("extract", "train"), ("clean", "train"),
                     ("train", "publish")}
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.get_task("extract").retries >= 3
