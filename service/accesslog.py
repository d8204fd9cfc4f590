"""Access log: Paste's TransLogger lines (Apache combined format), phones masked, written
in batches.

A line per request through `logging` cost the request thread a LogRecord, the handler's
lock (contended by every worker), formatting and a write system call; on the 2-core bench
that was about a sixth of the server's CPU. Here a request only formats its line (the
timestamp is formatted once a second) and appends it to a deque; a background thread
hands what has gathered to the `shoprecs.access` logger every `interval` seconds as one
record, one line per request in its message. A request thread writes the batch itself if
`max_lines` pile up (the writer falls behind), so memory stays bounded. `stop()` (the
server's shutdown) writes what is left, so no line is lost on SIGTERM.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
from urllib.parse import quote

from paste.translogger import TransLogger

from core.phones import mask

_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*\Z").match  # what quote() leaves as it is


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
    """TransLogger's Apache combined lines, anything phone-like in the URI masked, handed
    to an AccessLog instead of one `logging` call per request."""

    def __init__(self, application, access_log: AccessLog, **kwargs):
        super().__init__(application, logger=access_log.logger, **kwargs)
        self.access_log = access_log
        self._clock = _Clock(self.time_format)

    def __call__(self, environ, start_response):
        start = time.time()
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        req_uri = path if _UNQUOTED(path) else quote(path)
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
            "REMOTE_ADDR": (environ.get("HTTP_X_FORWARDED_FOR") or environ.get("REMOTE_ADDR")
                            or "-"),
            "REMOTE_USER": environ.get("REMOTE_USER") or "-",
            "REQUEST_METHOD": method, "REQUEST_URI": mask(req_uri),
            "HTTP_VERSION": environ.get("SERVER_PROTOCOL"), "time": self._clock(start),
            "status": status.split(None, 1)[0], "bytes": "-" if bytes is None else bytes,
            "HTTP_REFERER": environ.get("HTTP_REFERER", "-"),
            "HTTP_USER_AGENT": environ.get("HTTP_USER_AGENT", "-")})
