"""cheroot, the HTTP server under CherryPy, adjusted for many small keep-alive answers.

* Its own error answers (413, 414, 400 before the app runs) carry the API's JSON body.
* One `send` per response: cheroot writes the head and then the body, two system calls
  and, in a server bound by the GIL, two hand-overs of it. The head is held and goes out
  with the body's first chunk (or alone when the request ends without a body).
* Request lines and headers are cut from the read buffer with one `find`: cheroot reads
  them line by line through `_pyio`'s pure-Python `readline`, which copies the buffer and
  takes its lock several times a line.
* The `Date` header is formatted once a second, not per response.
* Whether another idle keep-alive connection may be kept is read without cheroot's
  selector lock, which every worker and the selector thread otherwise take per request.
"""
from __future__ import annotations

import email.utils
import io
import json
import time

from cheroot.errors import socket_errors_to_ignore
from cheroot.makefile import MakeFile, StreamReader, StreamWriter
from cheroot.server import HTTPConnection
from cherrypy._cpwsgi_server import CPWSGIHTTPRequest, CPWSGIServer

_date = (-1, b"")


def http_date() -> bytes:
    global _date
    second, value = _date  # one read: threads may race to refresh it, harmlessly
    now = int(time.time())
    if now != second:
        value = email.utils.formatdate(now, usegmt=True).encode("latin-1")
        _date = (now, value)
    return value


class _HeldHeadWriter(StreamWriter):
    """A socket writer that can hold the next write and send it with the one after."""

    _hold = False
    _held = b""

    def hold_next(self) -> None:
        self._hold = True

    def write(self, data, *args, **kwargs):
        if self._hold:
            self._hold, self._held = False, bytes(data)
            return len(data)
        if self._held:
            data, self._held = self._held + data, b""
        return super().write(data, *args, **kwargs)

    def release(self) -> None:
        self._hold = False
        if self._held:
            self.write(b"")


class _LineReader(StreamReader):
    """cheroot's socket reader, with a readline that cuts whole lines from the buffer."""

    def readline(self, size=-1):
        with self._read_lock:
            if self._read_pos >= len(self._read_buf):
                self._peek_unlocked(1)  # one read from the socket, as _pyio's would do
            buf, pos = self._read_buf, self._read_pos
            end = buf.find(b"\n", pos) + 1
            if end and (size is None or size < 0 or end - pos <= size):
                self._read_pos = end
                self.bytes_read += end - pos
                return buf[pos:end]
        return super().readline(size)  # a line longer than `size` or not all read yet


def _makefile(sock, mode="r", bufsize=io.DEFAULT_BUFFER_SIZE):
    return (_HeldHeadWriter if "w" in mode else _LineReader)(sock, mode, bufsize)


class _Request(CPWSGIHTTPRequest):
    def send_headers(self):
        if not any(key.lower() == b"date" for key, _ in self.outheaders):
            self.outheaders.append((b"Date", http_date()))
        wfile = self.conn.wfile
        if isinstance(wfile, _HeldHeadWriter):
            wfile.hold_next()
        super().send_headers()

    def respond(self):
        try:
            super().respond()
        finally:
            wfile = self.conn.wfile
            if isinstance(wfile, _HeldHeadWriter):
                wfile.release()

    def simple_response(self, status, msg=""):
        """cheroot's own error answers (before the app runs) with the API's JSON body."""
        status = str(status)
        text = msg.decode("latin-1") if isinstance(msg, bytes) else str(msg)
        code = status[4:].strip().lower().replace(" ", "_").replace("-", "_") or "error"
        body = json.dumps({"error": {"code": code, "message": text or status}},
                          separators=(",", ":")).encode()
        head = [f"{self.server.protocol} {status}", f"Content-Length: {len(body)}",
                "Content-Type: application/json"]
        if status[:3] in {"413", "414"}:  # as cheroot does: the rest of the request is unread
            self.close_connection = True
            if self.response_protocol == "HTTP/1.1":
                head.append("Connection: close")
        try:
            self.conn.wfile.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        except OSError as exc:
            if exc.args and exc.args[0] not in socket_errors_to_ignore:
                raise


class _Connection(HTTPConnection):
    RequestHandlerClass = _Request

    def __init__(self, server, sock, makefile=MakeFile):
        # plain TCP only: a TLS adapter brings its own file objects
        super().__init__(server, sock, _makefile if makefile is MakeFile else makefile)


class Server(CPWSGIServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # sets ConnectionClass.RequestHandlerClass ...
        self.ConnectionClass = _Connection  # ... so ours comes after

    @property
    def can_add_keepalive_connection(self) -> bool:
        limit = self.keep_alive_conn_limit
        if limit is None:
            return True
        try:  # len() of the selector's map is atomic under the GIL
            mapping = self._connections._selector._selector.get_map()
        except AttributeError:  # another cheroot: its own (locked) count
            return super().can_add_keepalive_connection
        return mapping is not None and len(mapping) - 1 < limit  # minus the listener
