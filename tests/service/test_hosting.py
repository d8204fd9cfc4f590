"""The hosting layer's own parts, without a server: the batched, masked access log
(service/accesslog.py) and the worker supervisor's checks (service/workers.py).
"""
import logging
import os
import re
import socket
import time
from urllib.parse import quote, quote_plus, unquote

import pytest

from core.errors import ConfigError
from service.accesslog import AccessLog, MaskedTransLogger, trusted_networks


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def access():
    logger = logging.getLogger("tests.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    records = _Records()
    logger.addHandler(records)
    yield AccessLog(logger, interval=0.05, max_lines=3), records
    logger.removeHandler(records)


def test_access_lines_are_translogger_lines_with_phones_masked(access):
    log, records = access

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", "2")])
        return [b"[]"]

    logged = MaskedTransLogger(app, log)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/+7 (905) 545-5709/recommendations",
               "QUERY_STRING": "limit=1", "SCRIPT_NAME": "", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "ua"}
    assert b"".join(logged(environ, lambda status, headers, exc_info=None: None)) == b"[]"
    log.start()
    log.stop()
    (line,) = records.messages
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /users/\*{6}09/recommendations\?limit=1 HTTP/1\.1" 200 2 "-" '
                        r'"ua"', line), line
    assert "545" not in line


PHONES = ["+7 (916) 539-6205", "+7(916)539-6205", "79165396205", "89165396205",
          "9165396205", "+7-916-539-62-05", "7.916.539.62.05", "8 916 539 62 05"]
SPELLINGS = {"as is": lambda p: p, "percent-encoded": quote, "+ for space": quote_plus,
             "encoded twice": lambda p: quote(quote(p))}


def _line(access, trusted=(), **environ) -> str:
    log, records = access

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"[]"]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "QUERY_STRING": "",
               "SCRIPT_NAME": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.9",
               **environ}
    b"".join(MaskedTransLogger(app, log, trusted)(environ, lambda *a, **k: None))
    log.start()
    log.stop()
    return records.messages.pop()


@pytest.mark.parametrize("phone", PHONES)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_no_phone_reaches_the_access_log_from_any_field(access, phone, spelling):
    sent = SPELLINGS[spelling](phone)
    trusted = trusted_networks("10.0.0.0/8")
    fields = {"PATH_INFO": f"/users/{unquote(sent)}/recommendations",  # as WSGI decodes it
              "QUERY_STRING": f"phone={sent}&q={sent}", "HTTP_REFERER": f"https://x/?p={sent}",
              "HTTP_USER_AGENT": f"agent {sent}", "HTTP_X_FORWARDED_FOR": sent}
    for field, value in fields.items():
        line = _line(access, trusted, **{field: value})
        assert "5396205" not in line and "539-62" not in line and "539 62" not in line, line
        assert "916" not in line.replace("10.0.0.9", ""), (field, line)


def test_a_client_cannot_forge_a_log_field(access):
    line = _line(access, HTTP_USER_AGENT='x" 500 999 "forged\nhost - - [fake]',
                 HTTP_REFERER='https://x/"quoted"', QUERY_STRING='a="b"')
    fields = re.fullmatch(r'(\S+) - - \[[^]]+\] "([^"]*)" (\d+) (\S+) "((?:[^"\\]|\\.)*)" '
                          r'"((?:[^"\\]|\\.)*)"', line)
    assert fields, line
    assert fields.group(3) == "200" and "\n" not in line
    assert fields.group(6) == 'x\\" 500 999 \\"forged\\x0ahost - - [fake]'


def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(access):
    trusted = trusted_networks("10.0.0.0/8, 192.168.1.1")
    chain = "203.0.113.7, 10.0.0.3"  # the client, then a proxy of ours
    assert _line(access, (), HTTP_X_FORWARDED_FOR=chain).startswith("10.0.0.9 ")
    assert _line(access, trusted, HTTP_X_FORWARDED_FOR=chain).startswith("203.0.113.7 ")
    assert _line(access, trusted, REMOTE_ADDR="198.51.100.1",
                 HTTP_X_FORWARDED_FOR=chain).startswith("198.51.100.1 ")  # not a proxy
    assert _line(access, trusted, HTTP_X_FORWARDED_FOR="junk, 10.0.0.3").startswith(
        "10.0.0.9 ")
    with pytest.raises(ConfigError, match="service.trusted_proxies: 'nope'"):
        trusted_networks("10.0.0.1, nope")


def test_access_log_writes_every_line_in_order_and_the_rest_on_stop(access):
    log, records = AccessLog(access[0].logger, interval=0.05), access[1]
    log.start()
    for i in range(200):
        log.add(f"line {i}")
    time.sleep(0.2)  # a batch or two written; the rest on stop
    log.add("line 200")
    log.stop()
    assert "\n".join(records.messages).split("\n") == [f"line {i}" for i in range(201)]
    assert len(records.messages) < 10  # in batches, not a record per line


def test_a_request_writes_its_own_line_when_the_writer_is_behind(access):
    log, records = access  # max_lines=3, and the writer is not started
    for i in range(5):
        log.add(f"line {i}")
    assert records.messages == ["line 3", "line 4"]  # written by the "request" itself
    log.start()
    log.stop()
    assert records.messages == ["line 3", "line 4", "line 0\nline 1\nline 2"]


def test_workers_refuse_an_address_already_served():
    from service.workers import check_address

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a stale worker's
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # free again


def _dies_at_once(*args) -> None:  # a worker whose snapshot, port or config can never work
    raise SystemExit(3)


def test_supervisor_replaces_dying_workers_then_gives_up(published):
    from service import workers
    from shoprecs.demo import free_port

    class Doomed(workers.Supervisor):
        target = staticmethod(_dies_at_once)

    supervisor = Doomed(published, "127.0.0.1", free_port(), threads=1, workers=2)
    assert supervisor.run() == 1  # after MAX_FAST_DEATHS starts that died at once
    assert len(supervisor._fast_deaths) == workers.MAX_FAST_DEATHS
    assert workers.MULTIPROC_ENV not in os.environ and supervisor._workers == {}
