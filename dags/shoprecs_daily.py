"""
### shoprecs daily

The nightly run of the recommender: one task per step of the night as pipeline/night.py
declares it, the same steps `shoprecs run` walks, with the same needs:

    extract ──▶ clean ──┬──▶ attribute ──┐
                        ├──▶ train ──────┴──▶ gate ──▶ publish ──▶ reload
                        └──▶ privacy

attribute, train and privacy need only clean, so Airflow may start them together; each
holds the warehouse lock while it works (core/locks.py), so they run one after another.
The run at midnight UTC of day **D** processes the day before, its data interval
**[D-1, D)**; dates given on the command line (`airflow dags test`, `airflow backfill
create`) are run times D.

A step that fails for good is logged, alerted (`alert.webhook_url`) and stops what needs it;
a failed gate is a verdict, not retried, and the served version stays; a failed attribution
is alerted and the night goes on. Settings (bus URL and credentials, warehouse, service URL)
come from the worker's shoprecs configuration / `SHOPRECS_*` environment, never from this
file; Spark's master from `spark-defaults.conf` (or `$SPARK_CONF_DIR`'s). Retry delays
start at Airflow's `[core] default_task_retry_delay` (300 s unless configured).
docs/airflow.md: the first night on a fresh warehouse, backfills.
"""
from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, get_current_context, task

from pipeline.alerts import on_failure, one_line
from pipeline.night import NIGHT


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


def run_step(name: str, upstream: dict, tonight=None):
    """One step of the night, run as `shoprecs run` runs it (pipeline/night.py), its
    decisions told to Airflow: a declined step is skipped, a failed gate fails for good.
    `tonight`: the Night (default: the one the running task's data interval names)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from core import config
    from models.gate import QualityGateError
    from pipeline import night

    if tonight is None:
        context = get_current_context()
        first, last = _days(context["data_interval_start"], context["data_interval_end"])
        tonight = night.Night(config.load(), dt.date.fromisoformat(first),
                              dt.date.fromisoformat(last))
    try:
        with one_line():
            return night.run_step(night.STEPS[name], tonight, upstream)
    except night.Skipped as exc:
        raise AirflowSkipException(str(exc)) from exc
    except QualityGateError as exc:  # a verdict, not a glitch: retrying cannot help
        raise AirflowFailException(str(exc)) from exc
    finally:
        tonight.close()


def _task(step):
    """The task of one step; its needs' results arrive as keyword arguments (XCom)."""
    backoff = {"retry_exponential_backoff": 2.0,
               "max_retry_delay": dt.timedelta(hours=1)} if step.retries > 1 else {}

    @task(task_id=step.name, retries=step.retries, doc=step.doc, **backoff)
    def run(**kwargs):
        return run_step(step.name, {need: kwargs[need] for need in step.needs})
    return run


@dag(
    schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC", interval=dt.timedelta(days=1)),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-team", "on_failure_callback": on_failure},
    tags=["shoprecs"],
    doc_md=__doc__,
)
def shoprecs_daily():
    made: dict = {}
    for step in NIGHT:  # declared in order: every need is made before it is needed
        made[step.name] = _task(step)(**{need: made[need] for need in step.needs})


shoprecs_daily()
