"""
### shoprecs hourly catalog

Every hour, `shoprecs catalog`: the bus's `/goods` (availability, price, category) is
published as the catalog in force beside the served model. The service's workers pick it
up within `service.rules_interval` seconds, so a product out of stock this morning leaves
every answer within the hour, without a retrain. A failed pull (bus down, an empty
catalog) fails the task, alerts, and leaves the catalog in force as it was.
"""
from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from pipeline.alerts import on_failure, one_line


@dag(
    schedule=CronTriggerTimetable("15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-team", "retries": 2, "retry_delay": dt.timedelta(minutes=2),
                  "on_failure_callback": on_failure},
    tags=["shoprecs"],
    doc_md=__doc__,
)
def shoprecs_catalog():
    @task(execution_timeout=dt.timedelta(minutes=20))
    def catalog() -> dict:
        import pipeline
        from core import config

        with one_line():
            return pipeline.catalog(config.load())

    catalog()


shoprecs_catalog()
