"""Telling the service to reload (pipeline.reload_service) and alerting (alerts.send):
both must report what happened and never raise."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import pipeline
from pipeline import alerts
from shoprecs.demo import free_port


@pytest.fixture
def stub():
    """An HTTP server answering POSTs with `stub.status`; records path, key and body."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            server.calls.append({"path": self.path, "key": self.headers.get("X-API-Key"),
                                 "body": json.loads(body) if body else None})
            self.send_response(server.statuses.pop(0) if server.statuses else 200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.calls, server.statuses = [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_reload_posts_with_the_first_admin_key(settings, stub):
    s = settings.replace(service_url=stub.url + "/", admin_api_keys=" k1 , k2")
    assert pipeline.reload_service(s, "v1")["reloaded"] is True
    assert stub.calls == [{"path": "/admin/reload", "key": "k1", "body": None}]


def test_reload_retries_a_busy_service(settings, stub):
    stub.statuses = [503, 502]
    s = settings.replace(service_url=stub.url, admin_api_keys="k1")
    assert pipeline.reload_service(s, "v1", attempts=3)["reloaded"] is True
    assert len(stub.calls) == 3


def test_reload_refused_is_a_warning_with_the_fix(settings, stub, caplog):
    stub.statuses = [401]
    s = settings.replace(service_url=stub.url, admin_api_keys="wrong")
    result = pipeline.reload_service(s, "v1")
    assert result["reloaded"] is False and "SHOPRECS_ADMIN_API_KEYS" in result["detail"]
    assert len(stub.calls) == 1  # a refusal is not retried
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_reload_of_an_unreachable_service_warns_and_returns(settings):
    s = settings.replace(service_url=f"http://127.0.0.1:{free_port()}",
                            admin_api_keys="k1")
    result = pipeline.reload_service(s, "v7", attempts=2)
    assert result["reloaded"] is False
    assert "after 2 attempts" in result["detail"] and "v7" in result["detail"]


def test_reload_without_an_admin_key_does_not_post(settings, stub):
    s = settings.replace(service_url=stub.url, admin_api_keys="")
    result = pipeline.reload_service(s, "v1")
    assert result["reloaded"] is False and "SHOPRECS_ADMIN_API_KEYS" in result["detail"]
    assert stub.calls == []


def test_alert_is_logged_and_posted(settings, stub, caplog):
    s = settings.replace(alert_webhook_url=stub.url + "/hook")
    assert alerts.send(s, "extract failed", task_id="extract") is True
    assert stub.calls[0]["path"] == "/hook"
    assert stub.calls[0]["body"] == {"text": "extract failed", "task_id": "extract"}
    assert any(r.levelno == logging.ERROR and "extract failed" in r.getMessage()
               for r in caplog.records)


def test_alert_without_webhook_only_logs(settings, caplog):
    assert alerts.send(settings, "clean failed") is False
    assert "clean failed" in caplog.text


def test_undeliverable_alert_does_not_raise_or_log_the_url(settings, stub, caplog):
    stub.statuses = [500]
    s = settings.replace(alert_webhook_url=stub.url + "/secret-token")
    assert alerts.send(s, "publish failed") is False
    assert "secret-token" not in caplog.text and "500" in caplog.text


def test_a_failed_task_alerts_with_the_operator_line_or_the_error_type(stub, monkeypatch):
    from types import SimpleNamespace

    from core.errors import BusUnavailable

    monkeypatch.setenv("SHOPRECS_ALERT_WEBHOOK_URL", stub.url + "/hook")
    ti = SimpleNamespace(dag_id="shoprecs_daily", task_id="extract", run_id="r1", try_number=5)
    with pytest.raises(Exception) as known:
        with alerts.one_line():
            raise BusUnavailable("the bus at http://bus is unreachable; check bus.url")
    for exc in (known.value, KeyError("basket")):
        alerts.on_failure({"ti": ti, "exception": exc, "data_interval_start": "a",
                           "data_interval_end": "b"})
    errors = [c["body"]["error"] for c in stub.calls]
    assert errors == ["error: the bus at http://bus is unreachable; check bus.url",
                      "KeyError: 'basket'"]
