r"""Access log: Paste's TransLogger lines (Apache combined format), written off the request
thread, with nothing personal or forged in them.

A line per request through `logging` cost the request thread a LogRecord, the handler's
lock (contended by every worker), formatting and a write system call; on the 2-core bench
that was about a sixth of the server's CPU. Here a request only formats its line (the
timestamp is formatted once a second) and queues it; logging's QueueListener writes the
lines to the `shoprecs.access` logger in batches from a thread of its own (`AccessLog`),
and the server's shutdown writes what is left, so no line is lost on SIGTERM.

What a client sends is logged only after `logged()`: percent-encoding undone (up to three
times, so `%2B7%20(916)...` and `+7+(916)...` read as the phone they are), anything
phone-like masked (core/phones.py), then escaped: the request line and Referer
percent-encoded again, the User-Agent with `\"`, `\\` and `\xHH`, so no client can break
a field or forge one. The client address is the connection's peer; `X-Forwarded-For` is
believed only when that peer is one of `service.trusted_proxies` (`client_address`).
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import re
import time
from logging.handlers import QueueListener
from urllib.parse import quote, unquote

from paste.translogger import TransLogger

from core.errors import ConfigError
from core.phones import mask

_URL_SAFE = "/?&=,;:@!$'()*+~"  # kept as they are when a URL is encoded again
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\uffff"\\]')  # escaped in a quoted field


def logged(value: str | None, url: bool = False) -> str:
    """A client's text as the access log may hold it: decoded, masked, escaped."""
    if not value:
        return "-"
    for _ in range(3):
        decoded = unquote(value, encoding="latin-1")
        if decoded == value:
            break
        value = decoded
    value = mask(value)
    if url:
        return quote(value, safe=_URL_SAFE, encoding="latin-1")
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group(0)):02x}" if m.group(0) not in '"\\'
                       else "\\" + m.group(0), value)


def trusted_networks(value: str) -> tuple:
    """`service.trusted_proxies` ("10.0.0.5, 10.1.0.0/16") as networks; ConfigError naming
    a bad entry."""
    found = []
    for part in (p.strip() for p in (value or "").split(",")):
        if part:
            try:
                found.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(f"service.trusted_proxies: {part!r} is not an IP address "
                                  "or network (e.g. 10.0.0.5, 10.1.0.0/16)") from None
    return tuple(found)


def client_address(environ: dict, trusted: tuple) -> str:
    """Who sent the request: the connection's peer, or, when that peer is a trusted proxy,
    the last address of X-Forwarded-For that is not one (what the proxies saw)."""
    peer = environ.get("REMOTE_ADDR") or "-"
    if not trusted or not _is_in(peer, trusted):
        return peer
    for hop in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # not an address: the header was forged or mangled
        if not _is_in(hop, trusted):
            return hop
    return peer


def _is_in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class AccessLog(QueueListener):
    """Lines queued by the request threads and written to `logger` in batches by logging's
    QueueListener thread.

    A request only puts its line on the queue (about 1 us; a logging call through
    QueueHandler builds a LogRecord on the request thread: 12 us, a tenth of a lookup).
    The listener waits `interval` seconds after a line arrives, then writes all that
    gathered as one record, one line per request in its message. When `max_lines` wait
    (the writer fell behind), the request thread writes its own line: memory stays
    bounded and no line is lost. `stop()` writes every line queued before it."""

    def __init__(self, logger: logging.Logger, interval: float = 0.2, max_lines: int = 10000):
        super().__init__(queue.SimpleQueue())
        self.logger, self.interval, self.max_lines = logger, interval, max_lines

    def add(self, line: str) -> None:
        if self.queue.qsize() < self.max_lines:
            self.queue.put_nowait(line)
        else:
            self.handle(line)

    def dequeue(self, block: bool):
        first = self.queue.get(block)
        if not isinstance(first, str):
            return first  # the listener's own sentinel: stop
        time.sleep(self.interval)
        lines = [first]
        for _ in range(self.queue.qsize()):
            line = self.queue.get_nowait()
            if not isinstance(line, str):  # stop once these are written
                self.queue.put_nowait(line)
                break
            lines.append(line)
        return "\n".join(lines)

    def handle(self, lines: str) -> None:
        self.logger.handle(self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0,
                                                  lines, None, None))


class _Clock:
    """TransLogger's `[%d/%b/%Y:%H:%M:%S +zone]`, formatted once per second."""

    def __init__(self, time_format: str):
        self._format = time_format
        self._cached = (-1, "")

    def __call__(self, when: float) -> str:
        second, text = self._cached  # one read: threads may race to refresh it, harmlessly
        if int(when) != second:
            local = time.localtime(when)
            offset = -(time.altzone if local.tm_isdst > 0 else time.timezone) // 36
            text = f"{time.strftime(self._format, local)}{offset:+05d}"
            self._cached = (int(when), text)
        return text


class MaskedTransLogger(TransLogger):
    """TransLogger's Apache combined lines, every client field through `logged`, handed to
    an AccessLog instead of one `logging` call per request."""

    def __init__(self, application, access_log: AccessLog, trusted: tuple = (), **kwargs):
        super().__init__(application, logger=access_log.logger, **kwargs)
        self.access_log = access_log
        self.trusted = trusted
        self._clock = _Clock(self.time_format)

    def __call__(self, environ, start_response):
        start = time.time()
        req_uri = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            req_uri += "?" + environ["QUERY_STRING"]
        method = environ["REQUEST_METHOD"]

        def logged_start_response(status, headers, exc_info=None):
            size = None
            for name, value in headers:
                if name.lower() == "content-length":
                    size = value
            self.write_log(environ, method, req_uri, start, status, size)
            return start_response(status, headers, exc_info)

        return self.application(environ, logged_start_response)

    def write_log(self, environ, method, req_uri, start, status, bytes):  # noqa: A002
        self.access_log.add(self.format % {
            "REMOTE_ADDR": client_address(environ, self.trusted),
            "REMOTE_USER": "-",  # never the Basic authentication's user name
            "REQUEST_METHOD": logged(method), "REQUEST_URI": logged(req_uri, url=True),
            "HTTP_VERSION": logged(environ.get("SERVER_PROTOCOL")),
            "time": self._clock(start), "status": status.split(None, 1)[0],
            "bytes": "-" if bytes is None else bytes,
            "HTTP_REFERER": logged(environ.get("HTTP_REFERER"), url=True),
            "HTTP_USER_AGENT": logged(environ.get("HTTP_USER_AGENT"))})
