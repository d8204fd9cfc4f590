r"""Access log: Paste's TransLogger lines (Apache combined format), written in batches, with
nothing personal or forged in them.

A line per request through `logging` cost the request thread a LogRecord, the handler's
lock (contended by every worker), formatting and a write system call; on the 2-core bench
that was about a sixth of the server's CPU. Here a request only formats its line (the
timestamp is formatted once a second) and appends it to a deque; a background thread
hands what has gathered to the `shoprecs.access` logger every `interval` seconds as one
record, one line per request in its message. A request thread writes the batch itself if
`max_lines` pile up (the writer falls behind), so memory stays bounded. `stop()` (the
server's shutdown) writes what is left, so no line is lost on SIGTERM.

What a client sends is logged only after `logged()`: percent-encoding undone (up to three
times, so `%2B7%20(916)...` and `+7+(916)...` read as the phone they are), anything
phone-like masked (core/phones.py), then escaped: the request line and Referer
percent-encoded again, the User-Agent with `\"`, `\\` and `\xHH`, so no client can break
a field or forge one. The client address is the connection's peer; `X-Forwarded-For` is
believed only when that peer is one of `service.trusted_proxies` (`client_address`).
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import re
import threading
import time
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


class AccessLog:
    """Lines buffered in memory and handed to `logger` in batches by a daemon thread."""

    def __init__(self, logger: logging.Logger, interval: float = 0.2, max_lines: int = 10000):
        self.logger, self.interval, self.max_lines = logger, interval, max_lines
        self._lines: collections.deque[str] = collections.deque()  # append/popleft: atomic
        self._write_lock = threading.Lock()  # batches leave in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            lines, pop = [], self._lines.popleft
            try:
                for _ in range(len(self._lines)):
                    lines.append(pop())
            except IndexError:
                pass
            if lines:
                self.logger.info("%s", "\n".join(lines))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="shoprecs-access-log",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive a bad handler
                logging.getLogger(__name__).exception("writing the access log failed")


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
