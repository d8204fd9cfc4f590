"""The DAG folder imports cleanly in Airflow and wires the nightly steps as documented."""
import datetime as dt

import pytest


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["shoprecs_catalog", "shoprecs_daily", "shoprecs_tune"]


def test_the_dags_tasks_are_the_declared_steps_of_the_night(dagbag):
    from pipeline.night import NIGHT

    dag = dagbag.dags["shoprecs_daily"]  # get_dag() would ask the metadata DB
    assert [t.task_id for t in dag.topological_sort()] == [s.name for s in NIGHT]
    assert {t.task_id: t.upstream_task_ids for t in dag.tasks} == {
        s.name: set(s.needs) for s in NIGHT}
    assert {t.task_id: t.retries for t in dag.tasks} == {s.name: s.retries for s in NIGHT}
    # as documented: attribute, train and privacy need only clean
    assert dag.get_task("privacy").upstream_task_ids == {"clean"}
    assert dag.get_task("gate").upstream_task_ids == {"train", "attribute"}


def test_the_weekly_tune_runs_after_sundays_night(dagbag):
    dag = dagbag.dags["shoprecs_tune"]
    assert [t.task_id for t in dag.tasks] == ["tune"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "0 3 * * 0"
    assert dag.get_task("tune").on_failure_callback


def test_the_catalog_refreshes_every_hour(dagbag):
    dag = dagbag.dags["shoprecs_catalog"]
    assert [t.task_id for t in dag.tasks] == ["catalog"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.timetable.expression == "15 * * * *"
    assert dag.get_task("catalog").on_failure_callback and dag.get_task("catalog").retries


def test_scheduling_retries_and_alerts(dagbag):
    dag = dagbag.dags["shoprecs_daily"]
    assert dag.max_active_runs == 1 and not dag.catchup
    extract = dag.get_task("extract")
    assert extract.retries >= 3 and extract.retry_exponential_backoff >= 2
    assert dag.get_task("gate").retries == 0  # a failed gate is a verdict
    assert all(t.on_failure_callback for t in dag.tasks)


def test_run_of_a_day_processes_the_day_before(dagbag):
    from airflow.serialization.encoders import coerce_to_core_timetable

    from dags.shoprecs_daily import _days

    timetable = coerce_to_core_timetable(dagbag.dags["shoprecs_daily"].timetable)
    for run_at in (dt.datetime(2024, 1, 8, tzinfo=dt.UTC),  # the nightly run
                   dt.datetime(2024, 1, 8, 17, 45, tzinfo=dt.UTC)):  # triggered by hand
        interval = timetable.infer_manual_data_interval(run_after=run_at)
        assert _days(interval.start, interval.end) == ("2024-01-07", "2024-01-07"), run_at
    three_nights = (dt.datetime(2024, 1, 5, tzinfo=dt.UTC), dt.datetime(2024, 1, 8, tzinfo=dt.UTC))
    assert _days(*three_nights) == ("2024-01-05", "2024-01-07")
    with pytest.raises(ValueError, match="no whole day ends within"):
        _days(dt.datetime(2024, 1, 8, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 8, 23, tzinfo=dt.UTC))
