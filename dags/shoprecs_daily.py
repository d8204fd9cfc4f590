"""
### shoprecs daily

The nightly run of the recommender. The run at midnight UTC of day **D** processes the
whole day before, its data interval **[D-1, D)**; the logical date shown is D-1. Dates
given on the command line (`airflow dags test`, `airflow backfill create`) are run times D.

1. **extract**: that day's orders and the goods catalog from the order bus into `landing/`
   (retried with exponential backoff: the bus is flaky), and the `bus.lookback_days` days
   before it again (orders listed late); a failed catalog pull keeps the last one;
2. **clean**: Spark cleaning of that day into `clean/orders` and `quarantine/`;
3. **train_als** and **train_fpgrowth**, in parallel: the two halves of the model for the
   training window ending that day, both writing `models/<version>/` (the version is a
   fingerprint of the window's landed data and the parameters, so both agree on it);
   Beside them, **attribute**: the impressions of the last days joined with their clicks
   and the orders that followed, per A/B arm (`reports/attribution/<day>.json`, shown by
   the service's `/experiments`); a failure there is logged and alerted, never fatal:
   the recommendations do not wait for the report on them;
4. **evaluate_gate**: `metrics.json` and `report.html` (with the attribution), then the
   quality gate. A model
   worse than the gate allows fails this task (no retry) and the run, and the served
   version stays;
5. **publish**: `serving/<version>` and the atomic switch of `serving/CURRENT` (skipped
   when re-running an old day: the served version, trained on later days, stays);
6. **reload**: `POST <service.url>/admin/reload`, skipped when no service URL is set;
   a service that cannot be reached is a warning, since it also polls `serving/CURRENT`;
7. **privacy**, once the day is clean: the erasures the service deferred, and raw orders
   past `privacy.raw_retention_days` rewritten without phones (docs/privacy.md).

Every task holds the warehouse lock while it works (one run at a time; engine/lock.py).

Every task is idempotent for its interval: re-running a day changes nothing. Settings
(bus URL and credentials, warehouse, service URL, alert webhook) come from the shoprecs
config file / `SHOPRECS_*` environment of the worker, never from this file; Spark's master
from `spark-defaults.conf` (the repository's, or `$SPARK_CONF_DIR`'s). A task that fails
for good is logged as an alert and POSTed to `alert.webhook_url` when set. Retry delays
start at Airflow's `[core] default_task_retry_delay` (300 s unless configured).

Backfill (runs D = 2024-01-02..2024-01-08 process the days 2024-01-01..2024-01-07, one at a
time; needs a running scheduler, e.g. `make airflow`):

    airflow backfill create --dag-id shoprecs_daily --from-date 2024-01-02 \\
        --to-date 2024-01-08 --max-active-runs 1

Without a scheduler: `airflow dags test shoprecs_daily D` for each D in turn.
"""
from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from shoprecs.alerts import on_failure, one_line


def _days(start, end) -> tuple[str, str]:
    """First and last of the whole UTC days that end within the data interval (start, end].

    The nightly run [D-1, D) gets D-1; a run triggered by hand at 17:45 on D, whose
    interval is [D-1 17:45, D 17:45), gets D-1 as well: D is not over, and a landed day is
    never fetched again."""
    first = start.astimezone(dt.UTC).date()
    last = end.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    if last < first:
        raise ValueError(f"no whole day ends within the data interval {start}..{end}: "
                         "trigger the run with a logical date, e.g. "
                         "`airflow dags test shoprecs_daily 2024-01-08`")
    return first.isoformat(), last.isoformat()


DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": 1,
    "on_failure_callback": on_failure,
}


@dag(
    schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC", interval=dt.timedelta(days=1)),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shoprecs"],
    doc_md=__doc__,
)
def shoprecs_daily():
    @task(retries=4, retry_exponential_backoff=2.0, max_retry_delay=dt.timedelta(hours=1))
    def extract(data_interval_start=None, data_interval_end=None) -> list[str]:
        from core import config
        from shoprecs import pipeline

        first, last = _days(data_interval_start, data_interval_end)
        with one_line():
            landed = pipeline.extract(config.load(), dt.date.fromisoformat(first),
                                      dt.date.fromisoformat(last))
        # what to clean: the day, and the lookback's days fetched again (bus.lookback_days)
        return [pipeline.landed_range(landed)[0].isoformat(), last]

    @task
    def clean(days: list[str]) -> dict:
        from core import config
        from shoprecs import pipeline

        first, last = map(dt.date.fromisoformat, days)
        with one_line():
            return pipeline.clean(config.load(), first, last)

    @task
    def train_als(days: list[str], _cleaned: dict) -> str:
        from core import config
        from shoprecs import pipeline

        return pipeline.train_als(config.load(), dt.date.fromisoformat(days[1]))

    @task
    def train_fpgrowth(days: list[str], _cleaned: dict) -> str:
        from core import config
        from shoprecs import pipeline

        return pipeline.train_fpgrowth(config.load(), dt.date.fromisoformat(days[1]))

    @task
    def attribute(days: list[str], _cleaned: dict) -> str:
        from core import config
        from shoprecs import alerts, pipeline

        settings = config.load()
        report = pipeline.attribute_quietly(settings, dt.date.fromisoformat(days[1]))
        if report is None:
            alerts.send(settings, f"shoprecs: the attribution of {days[1]} failed; the night "
                        "goes on (see the task log)", day=days[1])
            return "failed"
        return f"{report['impressions']} impressions"

    @task(retries=0)
    def evaluate_gate(days: list[str], als_version: str, fp_version: str,
                      _attributed: str) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from core import config
        from models.gate import QualityGateError
        from shoprecs import pipeline

        settings = config.load()
        version = pipeline.finalize(settings, dt.date.fromisoformat(days[1]),
                                    {als_version, fp_version})
        try:
            return pipeline.gate(settings, version)
        except QualityGateError as exc:  # a verdict, not a glitch: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    @task
    def publish(version: str) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from core import config
        from shoprecs import pipeline

        if pipeline.publish_nightly(config.load(), version) is None:
            raise AirflowSkipException(f"{version} not published: a version trained on later "
                                       "days is being served")
        return version

    @task
    def reload(version: str) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from core import config
        from shoprecs import pipeline

        settings = config.load()
        if not settings.service_url:
            raise AirflowSkipException("service.url is not set (SHOPRECS_SERVICE_URL): no "
                                       "service to tell; it will poll serving/CURRENT")
        return pipeline.reload_service(settings, version)

    @task
    def privacy(days: list[str], _cleaned: dict) -> dict:
        from core import config
        from shoprecs import pipeline

        with one_line():
            return pipeline.privacy(config.load(), dt.date.fromisoformat(days[1]))

    days = extract()
    cleaned = clean(days)
    privacy(days, cleaned)
    version = evaluate_gate(days, train_als(days, cleaned), train_fpgrowth(days, cleaned),
                            attribute(days, cleaned))
    reload(publish(version))


shoprecs_daily()
