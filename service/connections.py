"""Connections that hold no worker thread until their request has arrived whole.

cheroot hands a connection to one of its `service.threads` worker threads as soon as it is
accepted or readable, and the thread then waits, reading, for as long as the client takes
to send its request: a few clients that connect and send nothing, or send a byte every
few seconds, hold every thread and stop the service. Here a worker only collects what the
kernel already holds (one non-blocking `recv`) and gives the connection straight back to
cheroot's selector until the request head and its body are complete; only then does
cheroot parse and answer it, from memory. A client that connects and sends nothing costs
a selector entry, not a thread (cheroot closes it after `service.socket_timeout` seconds
of silence); a client that trickles is answered 408 and closed once `service.request_timeout`
seconds have passed since its first byte.

It also refuses, from the raw head where they are still visible, what cheroot would take
silently: a `Content-Length` together with `Transfer-Encoding` (the request-smuggling
shape behind a proxy), a `Content-Length` that is no number, two `X-API-Key` headers, and
`X_API_Key`-style spellings of the headers the service acts on (WSGI turns `_` and `-` into
the same name). Each gets a 400 with the API's JSON error, and the connection is closed.

The hook is cheroot's public one: `HTTPServer.ConnectionClass`, an `HTTPConnection` whose
`communicate()` returns True to keep the connection in the selector.
"""
from __future__ import annotations

import json
import logging
import socket
import time

from cheroot.makefile import MakeFile, StreamReader
from cheroot.server import HTTPConnection

log = logging.getLogger(__name__)

# headers the service acts on: an underscore spelling would reach it under the same name
GUARDED = (b"x-api-key", b"x-forwarded-for")
_END = b"\r\n\r\n"
# what makes a head worth reading line by line (lower case)
_MARKERS = (b"content-length", b"transfer-encoding", b"x-api-key", b"x_", b"expect")
_LAST_CHUNK = b"0\r\n\r\n"


class _Arrived(socket.SocketIO):
    """The socket's bytes, those already collected first."""

    def __init__(self, sock, early: bytearray):
        super().__init__(sock, "rb")
        self._early = early

    def readinto(self, buffer) -> int:
        if self._early:
            n = min(len(buffer), len(self._early))
            buffer[:n] = self._early[:n]
            del self._early[:n]
            return n
        return super().readinto(buffer)


class _Reader(StreamReader):
    """cheroot's socket reader, reading what `BufferedConnection` collected first."""

    def __init__(self, sock, early: bytearray, bufsize: int):
        super(StreamReader, self).__init__(_Arrived(sock, early), bufsize)
        self.bytes_read = 0


class Refused(Exception):
    """A request refused from its raw head: (status line, error code, message)."""


WHOLE, PARTIAL, CONTINUE = "whole", "partial", "continue"


def request_state(data: bytes | bytearray, max_body: int, max_head: int = 16384) -> str:
    """WHOLE when `data` (what a connection has received) holds a whole request: its head
    and, by Content-Length or a last chunk, its body (a body over `max_body` counts as
    whole: the app answers 413 without reading it); CONTINUE when the head asks for
    `100 Continue` before its body; else PARTIAL. A head longer than `max_head` counts as
    whole too: cheroot refuses it. Refused for an ambiguous head."""
    end = data.find(_END)
    if end < 0:
        return WHOLE if len(data) > max_head else PARTIAL
    head = bytes(data[:end]).lower()
    if not any(marker in head for marker in _MARKERS):  # most requests: a GET, no key
        return WHOLE
    lengths, chunked, keys, expects = set(), False, 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            lengths.add(value)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"x-api-key":
            keys += 1
        elif b"_" in name and name.replace(b"_", b"-") in GUARDED:
            raise Refused("400 Bad Request", "invalid_header", f"header "
                          f"{name.decode('latin-1')!r}: spell it with dashes "
                          f"({name.replace(b'_', b'-').decode('latin-1')})")
        elif name == b"expect":
            expects = value.lower() == b"100-continue"
    if keys > 1:
        raise Refused("400 Bad Request", "invalid_api_key", "more than one X-API-Key header")
    if chunked and lengths:
        raise Refused("400 Bad Request", "invalid_framing", "both Content-Length and "
                      "Transfer-Encoding: send one")
    body = len(data) - end - len(_END)
    if lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise Refused("400 Bad Request", "invalid_framing",
                          "Content-Length must be one non-negative number")
        length = int(next(iter(lengths)))
        whole = body >= length or length > max_body
    elif chunked:
        whole = data.endswith(_LAST_CHUNK) or body > max_body
    else:
        return WHOLE
    if whole:
        return WHOLE
    return CONTINUE if expects and body == 0 else PARTIAL


class BufferedConnection(HTTPConnection):
    """An HTTPConnection that reaches a worker's blocking parse only with a whole request
    in memory. Subclassed per server with its limits (`for_server`)."""

    request_timeout = 5.0  # seconds from a request's first byte to its last
    max_body = 65536
    max_head = 16384

    def __init__(self, server, sock, makefile=MakeFile):
        super().__init__(server, sock, makefile)
        self._early = bytearray()
        self.rfile = _Reader(sock, self._early, self.rbufsize)
        self._first_byte: float | None = None
        self._continued = False

    @classmethod
    def for_server(cls, request_timeout: float, max_body: int, max_head: int
                   ) -> type[BufferedConnection]:
        return type("ServiceConnection", (cls,), {"request_timeout": request_timeout,
                                                  "max_body": max_body, "max_head": max_head})

    def communicate(self) -> bool:
        """Answer the request if it has arrived whole; else keep the connection waiting in
        cheroot's selector (True) or close it (False)."""
        try:
            arrived = self._collect()
        except Refused as exc:
            self._refuse(*exc.args)
            return False
        if arrived is None:
            return False
        if not arrived:
            return True
        self._first_byte, self._continued = None, False
        return super().communicate()

    def _collect(self) -> bool | None:
        """Read what the kernel holds without waiting: True (a whole request), False (not
        yet) or None (the client went away, or its time is up)."""
        held = self.rfile.peek(0) if self.rfile.has_data() else b""
        if self._early or not held or request_state(held, self.max_body, self.max_head) != WHOLE:
            # a socket with a timeout waits for it even with MSG_DONTWAIT: none, briefly
            self.socket.settimeout(0)
            try:
                chunk = self.socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                chunk = None
            except OSError:
                return None
            finally:
                self.socket.settimeout(self.server.timeout)
            if chunk == b"":
                return None
            if chunk:
                self._early += chunk
                if self._first_byte is None:
                    self._first_byte = time.monotonic()
            state = request_state(bytes(held) + self._early, self.max_body, self.max_head)
            if state == CONTINUE and not self._continued:  # the client waits for our go
                self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._continued = True
            if state != WHOLE:
                if self._first_byte is not None and \
                        time.monotonic() - self._first_byte > self.request_timeout:
                    self._refuse("408 Request Timeout", "request_timeout", "the request did "
                                 f"not arrive whole within {self.request_timeout:g} s")
                    return None
                return False
        return True

    def _refuse(self, status: str, code: str, message: str) -> None:
        log.warning("refused a request from %s: %s", self.remote_addr, message)
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self._send(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def _send(self, data: bytes) -> None:
        try:
            self.socket.sendall(data)
        except OSError:
            pass
