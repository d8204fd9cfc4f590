"""Alerts when a step of the nightly pipeline fails: always a log line, and a JSON POST to
`alert.webhook_url` (SHOPRECS_ALERT_WEBHOOK_URL) when one is configured.

The body is a small JSON object (`text` plus the fields given), which chat webhooks
(Slack, Mattermost, Teams via a connector) display as is. Sending never raises: an alert
that cannot be delivered is logged, and the failure it reports stays the task's failure.

Used by the Airflow DAG's on_failure_callback (dags/shoprecs_daily.py).
"""
from __future__ import annotations

import logging

from core.config import Settings

log = logging.getLogger(__name__)


def send(settings: Settings, text: str, **fields) -> bool:
    """Log `text` as an error and POST it with `fields` to the webhook; True if delivered."""
    log.error("ALERT: %s %s", text, fields)
    url = settings.alert_webhook_url
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
