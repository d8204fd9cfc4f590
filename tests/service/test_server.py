"""The real thing: `shoprecs serve` (CherryPy) in its own process, over HTTP on loopback.

Hot reload while clients hammer the API, SIGHUP, JSON errors from the HTTP layer itself,
a graceful SIGTERM, and several worker processes on one port.
"""
import json
import os
import signal
import threading
import time

import pytest
import requests

from tests.conftest import SHOPPER
from tests.service.conftest import KEY, hammer, raw, v2_model, wait_for

pytestmark = pytest.mark.slow


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
        v2_model(published.root)
        assert wait_for(lambda: seen[0][-1][0] == "v2" and seen[1][-1][0] == "v2"), seen[0][-3:]
        broken = published.root / "serving" / "v3"
        broken.mkdir()
        (broken / "manifest.json").write_text('{"version": "v3"}')
        (published.root / "serving" / "CURRENT").write_text("v3\n")
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


def test_sighup_reloads_and_bad_requests_get_4xx(serve, published):
    proc, base = serve(reload_interval=0)
    v2_model(published.root)
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

    v2_model(published.root)
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
