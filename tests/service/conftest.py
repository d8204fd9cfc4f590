"""The real service for the tests that need one: `shoprecs serve` in its own process."""
import socket
import time

import pytest
import requests

from engine import publish
from shoprecs.demo import free_port, start_service
from tests.conftest import SHOPPER, TEST_KEY, write_model

KEY = "admin-test-key"


@pytest.fixture
def serve(published, tmp_path, monkeypatch):
    procs = []

    def start(reload_interval: float, workers: int = 1, **env):
        """The service on the `published` warehouse; `env`: more SHOPRECS_* settings."""
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("SHOPRECS_SERVICE_RELOAD_INTERVAL", str(reload_interval))
        monkeypatch.setenv("SHOPRECS_ADMIN_API_KEYS", KEY)
        monkeypatch.setenv("SHOPRECS_SERVICE_WORKERS", str(workers))
        monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the workers' metrics files go
        settings = published.replace(service_port=free_port())
        procs.append(start_service(settings, tmp_path / "service.log"))
        return procs[-1], f"http://127.0.0.1:{settings.service.port}"

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


