"""
### shoprecs daily

The nightly run of the recommender, for the day of the run's data interval:

1. **extract**: that day's orders and the goods catalog from the order bus into `landing/`
   (retried with exponential backoff: the bus is flaky);
2. **clean**: Spark cleaning into `clean/orders` and `quarantine/`;
3. **train**: ALS + FP-Growth on the training window ending that day;
4. **publish**: `serving/<version>` and the switch of `serving/CURRENT`.

Every task is idempotent for its day. Settings (bus URL and credentials, warehouse,
HMAC key) come from the shoprecs config file / `SHOPRECS_*` environment of the worker,
never from this file. Backfill: `airflow dags backfill shoprecs_daily -s D1 -e D2`.
"""
from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": 1,
    "retry_delay": dt.timedelta(minutes=2),
}


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shoprecs"],
    doc_md=__doc__,
)
def shoprecs_daily():
    @task(retries=4, retry_exponential_backoff=True)
    def extract(data_interval_start=None) -> str:
        from shoprecs import config, pipeline

        day = data_interval_start.date()
        pipeline.extract(config.load(), day, day)
        return day.isoformat()

    @task
    def clean(day: str) -> dict:
        from shoprecs import config, pipeline

        d = dt.date.fromisoformat(day)
        return pipeline.clean(config.load(), d, d)

    @task
    def train(day: str, _cleaned: dict) -> str:
        from shoprecs import config, pipeline

        return pipeline.train(config.load(), dt.date.fromisoformat(day))

    @task
    def publish(version: str) -> str:
        from shoprecs import config, pipeline

        return pipeline.publish(config.load(), version)

    day = extract()
    publish(train(day, clean(day)))


shoprecs_daily()
