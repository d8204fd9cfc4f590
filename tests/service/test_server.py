"""The real thing: `shoprecs serve` (CherryPy) in its own process, over HTTP on loopback.

Hot reload while clients hammer the API, SIGHUP, JSON errors from the HTTP layer itself,
a graceful SIGTERM, and several worker processes on one port.
"""
import dataclasses
import json
import os
import signal
import socket
import threading
import time

import pytest
import requests

from engine import publish
from shoprecs.demo import free_port, start_service
from tests.conftest import SHOPPER, TEST_KEY, write_model

pytestmark = pytest.mark.slow
KEY = "admin-test-key"


@pytest.fixture
def serve(published, tmp_path, monkeypatch):
    procs = []

    def start(reload_interval: float, workers: int = 1):
        monkeypatch.setenv("SHOPRECS_SERVICE_RELOAD_INTERVAL", str(reload_interval))
        monkeypatch.setenv("SHOPRECS_ADMIN_API_KEYS", KEY)
        monkeypatch.setenv("SHOPRECS_SERVICE_WORKERS", str(workers))
        monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the workers' metrics files go
        settings = dataclasses.replace(published, service_port=free_port())
        procs.append(start_service(settings, tmp_path / "service.log"))
        return procs[-1], f"http://127.0.0.1:{settings.service_port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def v2_model(root):
    from core.phones import user_key

    key = user_key(SHOPPER, TEST_KEY)
    write_model(root, "v2", recs=[(key, "102", 0.95, 1, False), (key, "101", 0.4, 2, False)])
    publish(root, "v2")


def hammer(base, stop, seen, failures):
    """Mixed requests on one keep-alive session until `stop` (at most 60 s)."""
    session = requests.Session()
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            recs = session.get(f"{base}/users/{SHOPPER}/recommendations?limit=1", timeout=5)
            rules = session.get(f"{base}/products/100/associations", timeout=5)
            cart = session.post(f"{base}/recommendations/basket", json={"items": [100]},
                                timeout=5)
        except requests.RequestException as exc:
            failures.append(repr(exc))
            continue
        for resp in (recs, rules, cart):
            if resp.status_code != 200:
                failures.append(f"{resp.status_code} {resp.text[:100]}")
        seen.append((recs.headers.get("X-Model-Version"), recs.json()[0]["goodsId"]))


def wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_reload_under_load_drops_no_request_and_refuses_a_broken_version(serve, published,
                                                                        tmp_path):
    proc, base = serve(reload_interval=0.2)
    stop, failures, seen = threading.Event(), [], [[], []]
    clients = [threading.Thread(target=hammer, args=(base, stop, seen[i], failures))
               for i in range(2)]
    for client in clients:
        client.start()
    try:
        assert wait_for(lambda: len(seen[0]) > 20)
        v2_model(published.warehouse)
        assert wait_for(lambda: seen[0][-1][0] == "v2" and seen[1][-1][0] == "v2"), seen[0][-3:]
        broken = published.warehouse / "serving" / "v3"
        broken.mkdir()
        (broken / "manifest.json").write_text('{"version": "v3"}')
        (published.warehouse / "serving" / "CURRENT").write_text("v3\n")
        time.sleep(1.0)  # five polls
        count = len(seen[0])
        assert wait_for(lambda: len(seen[0]) > count + 20)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert failures == []
    for answers in seen:
        versions = [v for v, _ in answers]
        assert versions[0] == "v1" and versions[-1] == "v2"
        switch = versions.index("v2")
        assert set(versions[switch:]) == {"v2"}  # never back to v1, never v3
        assert {g for v, g in answers if v == "v1"} == {101}  # each answer is one version's
        assert {g for v, g in answers if v == "v2"} == {102}
    metrics = requests.get(f"{base}/metrics").text
    assert 'shoprecs_snapshot_info{version="v2"} 1.0' in metrics
    assert 'shoprecs_snapshot_reloads_total{result="refused"} 1.0' in metrics
    resp = requests.post(f"{base}/admin/reload", headers={"X-API-Key": KEY})
    assert resp.status_code == 409 and "v3" in resp.json()["error"]["message"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = (tmp_path / "service.log").read_text()
    assert "GET /users/******05/recommendations" in log and SHOPPER not in log


def raw(base: str, request: bytes) -> tuple[int, dict, bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_sighup_reloads_and_bad_requests_get_4xx(serve, published):
    proc, base = serve(reload_interval=0)
    v2_model(published.warehouse)
    time.sleep(0.5)
    assert requests.get(f"{base}/ready").json()["version"] == "v1"  # no polling
    os.kill(proc.pid, signal.SIGHUP)
    assert wait_for(lambda: requests.get(f"{base}/ready").json()["version"] == "v2")
    assert proc.poll() is None  # SIGHUP reloads; it does not restart or exit

    too_big = (b"POST /recommendations/basket HTTP/1.1\r\nHost: x\r\nContent-Type: "
               b"application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
    status, headers, body = raw(base, too_big + b"{" * 1000)
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "request_entity_too_large"
    # What the HTTP layer refuses before the app runs is answered by cheroot, in plain text.
    big_header = b"X-Junk: " + b"a" * 20000 + b"\r\n"
    status, headers, body = raw(base, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big_header +
                                b"Connection: close\r\n\r\n")
    assert status in (413, 431) and body
    status, headers, body = raw(base, b"GARBAGE\r\n\r\n")
    assert status == 400 and body
    for method, path, code in (("GET", "/nope", 404), ("DELETE", "/health", 405)):
        resp = requests.request(method, base + path)
        assert resp.status_code == code and resp.json()["error"]["message"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_workers_share_the_port_count_together_reload_together_and_are_replaced(
        serve, published, tmp_path):
    proc, base = serve(reload_interval=0, workers=2)
    [metrics_dir] = tmp_path.glob("shoprecs-metrics-*")

    def writers():  # prometheus_client's multiprocess files: one set per worker pid
        return {int(f.stem.split("_")[1]) for f in metrics_dir.glob("counter_*.db")}

    sent = []

    def health() -> bool:  # a new connection each: the kernel spreads them over the workers
        sent.append(requests.get(f"{base}/health").status_code)
        return len(writers()) == 2  # the other worker may still be starting

    assert wait_for(health)
    while len(sent) < 60:
        health()
    workers = writers()
    assert sent == [200] * len(sent) and proc.pid not in workers
    metrics = requests.get(f"{base}/metrics").text
    assert f'shoprecs_http_requests_total{{route="/health",status="200"}} {len(sent)}.0' in metrics

    def versions():
        return {requests.get(f"{base}/ready").json()["version"] for _ in range(30)}

    v2_model(published.warehouse)
    assert versions() == {"v1"}  # no polling: nobody looked yet
    resp = requests.post(f"{base}/admin/reload", headers={"X-API-Key": KEY})
    assert resp.json()["version"] == "v2"  # this worker; the supervisor tells the other
    assert wait_for(lambda: versions() == {"v2"})

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/health", timeout=5).ok
        except requests.ConnectionError:  # queued on the killed worker's socket
            return False

    def log() -> str:
        return (tmp_path / "service.log").read_text()

    first, second = sorted(workers)
    os.kill(first, signal.SIGTERM)  # a worker stopped alone exits cleanly and is replaced;
    assert wait_for(lambda: f"(pid {first}) exited with" in log())
    assert f"(pid {first}) exited with 0" in log()
    for _ in range(8):  # reloads forwarded while its replacement boots must not kill it
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(0.25)
    assert wait_for(lambda: healthy() and len(writers()) == 3, seconds=60)
    assert "exited with -" not in log()
    os.kill(second, signal.SIGKILL)  # a crash: replaced too
    assert wait_for(lambda: healthy() and len(writers()) == 4, seconds=60)
    assert all(healthy() for _ in range(30))
    assert wait_for(lambda: versions() == {"v2"})  # the new workers loaded what CURRENT names
    alive = writers() - {first, second}
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not metrics_dir.exists()  # removed with the workers
    for pid in alive:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
