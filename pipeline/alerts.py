"""Alerts when a step of the nightly pipeline fails: always a log line, and a JSON POST to
`alert.webhook_url` (SHOPRECS_ALERT_WEBHOOK_URL) when one is configured.

The body is a small JSON object (`text` plus the fields given), which chat webhooks
(Slack, Mattermost, Teams via a connector) display as is. Sending never raises: an alert
that cannot be delivered is logged, and the failure it reports stays the task's failure.

`on_failure` is the DAGs' on_failure_callback (dags/).
"""
from __future__ import annotations

import contextlib
import logging

from core.config import Settings

log = logging.getLogger(__name__)


def send(settings: Settings, text: str, **fields) -> bool:
    """Log `text` as an error and POST it with `fields` to the webhook; True if delivered."""
    log.error("ALERT: %s %s", text, fields)
    url = settings.alert.webhook_url
    if not url:
        return False
    import requests

    try:
        resp = requests.post(url, json={"text": text, **fields}, timeout=10)
        resp.raise_for_status()
    except requests.RequestException as exc:
        # Never the URL itself in the log: webhook URLs often carry their token.
        log.warning("alert not delivered to alert.webhook_url (%s): %s",
                    type(exc).__name__, getattr(exc.response, "status_code", "no response"))
        return False
    return True


def on_failure(context) -> None:
    """Airflow's on_failure_callback: a task failed for good (its retries spent)."""
    from core import config

    ti = context["ti"]
    interval = f"{context['data_interval_start']}..{context['data_interval_end']}"
    exc = context.get("exception")
    # A known failure (one_line below) is already the operator's line; anything else is
    # named by its type, since the message alone may be empty or cryptic.
    error = str(exc) if str(exc).startswith("error: ") else f"{type(exc).__name__}: {exc}"
    send(config.load(), f"shoprecs: {ti.dag_id}.{ti.task_id} failed for {interval}",
         dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, try_number=ti.try_number,
         interval=interval, error=error)


@contextlib.contextmanager
def one_line():
    """Around an Airflow task's work: a known failure (core/errors.py) is logged as the one
    line `shoprecs` prints and fails the task with it, without the traceback; a bad
    configuration, a bus that answers unlike its profile or missing landed data fail it for
    good (retrying cannot help), an unreachable bus is retried."""
    from core.errors import OperatorError

    try:
        yield
    except OperatorError as exc:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        log.error("error: %s", exc)
        kind = AirflowException if exc.code == 4 else AirflowFailException
        raise kind(f"error: {exc}") from None
