"""The service against hostile clients, over HTTP through CherryPy (docs/security.md)."""
import json
import socket
import threading
import time
from time import perf_counter

import pytest
import requests

from tests.conftest import SHOPPER
from tests.service.conftest import raw

pytestmark = pytest.mark.slow


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _trickle(sock: socket.socket, payload: bytes, stop: threading.Event, every: float) -> None:
    for byte in payload:
        if stop.wait(every):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def test_idle_and_trickling_clients_hold_no_worker_thread(serve):
    proc, base = serve(reload_interval=0, SHOPRECS_SERVICE_REQUEST_TIMEOUT=3,
                       SHOPRECS_SERVICE_THREADS=4)
    stop = threading.Event()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    body = (b"POST /recommendations/basket HTTP/1.1\r\nHost: x\r\nContent-Type: "
            b"application/json\r\nContent-Length: 200\r\n\r\n")
    sockets, threads = [], []
    for n in range(200):  # 70 idle, 65 sending their head and 65 their body a byte at a time
        sock = socket.create_connection(("127.0.0.1", _port(base)))
        sockets.append(sock)
        if n >= 70:
            if n >= 135:
                sock.sendall(body)
            payload = head if n < 135 else b"{" + b" " * 199
            threads.append(threading.Thread(target=_trickle, args=(sock, payload, stop, 0.5),
                                            daemon=True))
            threads[-1].start()
    try:
        session, took = requests.Session(), []
        started = time.monotonic()
        while len(took) < 300 or time.monotonic() - started < 4:
            t = perf_counter()
            resp = session.get(f"{base}/users/{SHOPPER}/recommendations", timeout=10)
            took.append(perf_counter() - t)
            assert resp.status_code == 200, resp.text
        assert requests.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        took.sort()
        assert took[int(len(took) * 0.99)] < 1.0, took[-10:]
        # a trickler is cut off once its request has taken service.request_timeout
        sockets[100].settimeout(10)
        answer = sockets[100].recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert proc.poll() is None


@pytest.mark.parametrize("head, code", [
    (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "invalid_framing"),
    (b"Content-Length: -1\r\n\r\n", "invalid_framing"),
    (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "invalid_framing"),
    (b"X-API-Key: a\r\nX-API-Key: b\r\nContent-Length: 2\r\n\r\n{}", "invalid_api_key"),
    (b"X_API_Key: admin-test-key\r\nContent-Length: 2\r\n\r\n{}", "invalid_header"),
])
def test_ambiguous_heads_are_refused_and_the_connection_closed(serve, head, code):
    proc, base = serve(reload_interval=0)
    started = time.monotonic()
    # raw() reads until the server closes the connection
    status, headers, body = raw(base, b"POST /admin/reload HTTP/1.1\r\nHost: x\r\n" + head)
    assert time.monotonic() - started < 2
    assert status == 400 and headers["Connection"] == "close"
    assert json.loads(body)["error"]["code"] == code
