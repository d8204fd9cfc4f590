"""
### shoprecs weekly tune

Once a week (Sunday 03:00 UTC, after the night), `shoprecs tune` for the training window
ending the day before the run: every ALS setting of the grid, then the blend weights, on a
validation window before the nightly holdout, each trial scored by the code that publishes.
The winner is written to `models/TUNED.json`, which every later nightly run trains with
(its `metrics.json` records which tuning it came from).

A tune that fails or is stopped leaves `TUNED.json` as it was: the nights keep the last
good parameters. A retry resumes the search where it stopped (`models/tune-progress.json`).
`tune.quick` (`SHOPRECS_TUNE_QUICK=1`) searches a smaller grid for a small machine.
"""
from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from pipeline.alerts import on_failure, one_line


@dag(
    schedule=CronTriggerTimetable("0 3 * * 0", timezone="UTC", interval=dt.timedelta(days=7)),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-team", "retries": 1, "on_failure_callback": on_failure},
    tags=["shoprecs"],
    doc_md=__doc__,
)
def shoprecs_tune():
    @task(execution_timeout=dt.timedelta(hours=6))
    def tune(data_interval_end=None) -> dict:
        import pipeline
        from core import config

        end = data_interval_end.astimezone(dt.UTC).date() - dt.timedelta(days=1)
        with one_line():
            report = pipeline.tune(config.load(), end)
        return {k: report[k] for k in ("score", "validation", "als", "hybrid")}

    tune()


shoprecs_tune()
