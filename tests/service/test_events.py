"""Impressions, feedback and A/B arms through the API (service/events.py, engine/events.py,
experiments/arms.py): ids and arms in the headers, what is written to events/, the JSON
4xx of POST /events, stable arms across processes and restarts, bounded memory with a slow
disk, and a worker killed with SIGKILL losing at most its last batch."""
import datetime as dt
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
import requests

from core.phones import user_key
from engine.events import EventLog, FileSink
from experiments.arms import Experiment, ExperimentError
from service import create_app
from shoprecs.demo import free_port, start_service
from tests.conftest import SHOPPER, TEST_KEY

ARMS = "control:model:50, popular:popular:50"


def written(root, kind="impressions") -> list[dict]:
    found = []
    for path in glob.glob(str(root / "events" / kind / "dt=*" / "hour=*" / "*.jsonl")):
        with open(path) as lines:
            found += [json.loads(line) for line in lines]
    return found


@pytest.fixture
def app(published):
    settings = published.replace(experiment_name="exp1", experiment_arms=ARMS,
                                   events_interval=0.05)
    app = create_app({"TESTING": True, "SETTINGS": settings})
    yield app
    app.extensions["shoprecs.events"].stop()


def test_every_storefront_answer_is_recorded_with_its_id_arm_and_goods(app, published):
    client = app.test_client()
    resp = client.get(f"/users/{SHOPPER}/recommendations?limit=5")
    rec_id, arm = resp.headers["X-Recommendation-Id"], resp.headers["X-Experiment-Arm"]
    assert arm in ("control", "popular") and resp.get_json()[0]["goodsId"]
    wrapped = client.get(f"/users/{SHOPPER}/recommendations?limit=5&envelope=true").get_json()
    assert wrapped["items"] == resp.get_json() and wrapped["recommendationId"] != rec_id
    similar = client.get("/products/100/similar?shopper=%2B7%20916%20539-62-05")
    basket = client.post("/recommendations/basket", json={"items": [100]})
    assert similar.headers["X-Experiment-Arm"] == arm  # the same shopper, the same arm
    assert "X-Experiment-Arm" not in basket.headers  # no shopper named: no arm
    app.extensions["shoprecs.events"].flush()
    found = {e["id"]: e for e in written(published.root)}
    first = found[rec_id]
    assert first["shopper"] == user_key(SHOPPER, TEST_KEY) and SHOPPER not in json.dumps(found)
    assert first["route"] == "recommendations" and first["version"] == "v1"
    assert (first["experiment"], first["arm"], first["control"]) == ("exp1", arm, "control")
    assert first["goods"] == [str(i["goodsId"]) for i in resp.get_json()]
    assert first["variant"] == ("model" if arm == "control" else "popular")
    moment = dt.datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert abs(moment - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)  # UTC, now
    assert first["sources"] == resp.headers["X-Recommendation-Source"].split(",")
    assert found[basket.headers["X-Recommendation-Id"]]["shopper"] is None
    assert found[similar.headers["X-Recommendation-Id"]]["route"] == "similar"
    assert len(found) == 4


def test_arms_split_by_share_and_a_new_experiment_reshuffles():
    experiment = Experiment.parse("exp1", ARMS)
    keys = [user_key(f"7916{n:07d}", TEST_KEY) for n in range(2000)]
    arms = [experiment.assign(k).name for k in keys]
    assert 0.45 < arms.count("control") / len(arms) < 0.55
    skewed = Experiment.parse("exp1", "a:model:90, b:popular:10")  # shares are honoured
    assert 0.87 < [skewed.assign(k).name for k in keys].count("a") / len(keys) < 0.93
    # another name reshuffles: about half the shoppers change arm
    moved = sum(a != Experiment.parse("exp2", ARMS).assign(k).name for a, k in zip(arms, keys))
    assert 0.4 < moved / len(keys) < 0.6


@pytest.mark.parametrize("arms, fragment", [
    ("control:model:50", "at least two arms"),
    ("a:model:50, b:popular:40", "sum to 90"),
    ("a:model:50, b:bestsellers:50", "variants among"),
    ("a:model, b:popular:50", "not arm:variant:share"),
    ("a:model:50, a:popular:50", "each named once"),
    ("a:model:x, b:popular:50", "not a number"),
])
def test_a_bad_experiment_configuration_says_what_to_write(arms, fragment):
    with pytest.raises(ExperimentError, match=fragment):
        Experiment.parse("exp1", arms)
    assert Experiment.parse("", arms) is None  # no name: no experiment


def test_arms_are_the_same_in_another_process():
    experiment = Experiment.parse("exp1", ARMS)
    keys = [user_key(f"7903{n:07d}", TEST_KEY) for n in range(300)]
    code = ("import json, sys; from experiments.arms import Experiment; "
            f"e = Experiment.parse('exp1', {ARMS!r}); "
            "print(json.dumps([e.assign(k).name for k in json.load(sys.stdin)]))")
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(keys), text=True,
                           capture_output=True, check=True, env={**os.environ,
                                                                 "PYTHONHASHSEED": "123"})
    assert json.loads(other.stdout) == [experiment.assign(k).name for k in keys]


def test_feedback_is_recorded_once_per_event_id_and_keyed(app, published):
    client = app.test_client()
    rec_id = client.get(f"/users/{SHOPPER}/recommendations").headers["X-Recommendation-Id"]
    event = {"eventId": "e-1", "type": "click", "recommendationId": rec_id, "goodsId": 101,
             "phone": "8 916 539-62-05"}
    resp = client.post("/events", json={"events": [event, {**event, "eventId": "e-2",
                                                           "type": "add_to_cart"}]})
    assert resp.status_code == 202 and resp.get_json() == {"accepted": 2, "duplicates": 0}
    again = client.post("/events", json={"events": [event]})
    assert again.get_json() == {"accepted": 0, "duplicates": 1}
    app.extensions["shoprecs.events"].flush()
    feedback = sorted(written(published.root, "feedback"), key=lambda e: e["id"])
    assert [(e["id"], e["type"], e["goods"]) for e in feedback] == [
        ("e-1", "click", "101"), ("e-2", "add_to_cart", "101")]
    assert feedback[0]["shopper"] == user_key(SHOPPER, TEST_KEY)
    assert feedback[0]["recommendation"] == rec_id and "phone" not in feedback[0]


GOOD = {"eventId": "e-1", "type": "click", "recommendationId": "0123456789ab-1f",
        "goodsId": 101}


@pytest.mark.parametrize("body, status, code", [
    (b"not json", 400, "invalid_json"),
    (b"[]", 400, "invalid_json"),
    (json.dumps({}).encode(), 400, "invalid_events"),
    (json.dumps({"events": []}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [GOOD] * 101}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [{**GOOD, "type": "purchase"}]}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [{**GOOD, "recommendationId": "x"}]}).encode(), 400,
     "invalid_events"),
    (json.dumps({"events": [{**GOOD, "eventId": ""}]}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [{**GOOD, "goodsId": ""}]}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [{**GOOD, "extra": 1}]}).encode(), 400, "invalid_events"),
    (json.dumps({"events": [{**GOOD, "phone": "12"}]}).encode(), 400, "invalid_phone"),
    (json.dumps({"events": [GOOD], "pad": "x" * 70000}).encode(), 413, "request_entity_too_large"),
])
def test_bad_events_get_the_json_4xx(app, body, status, code):
    issued = app.extensions["shoprecs.recommendation_ids"]()  # a real answer's id
    body = body.replace(GOOD["recommendationId"].encode(), issued.encode())
    resp = app.test_client().post("/events", data=body, content_type="application/json")
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == code
    assert "Traceback" not in resp.get_data(as_text=True)


class SlowSink:
    def __init__(self, seconds):
        self.seconds, self.count = seconds, 0

    def write(self, kind, events):
        time.sleep(self.seconds)
        self.count += len(events)

    def close(self):
        pass


def test_a_slow_disk_bounds_memory_and_counts_what_it_drops():
    dropped = []
    log = EventLog([SlowSink(0.5)], interval=0.01, batch=100, max_pending=1000,
                   on_dropped=lambda kind, n: dropped.append(n))
    started = time.perf_counter()
    accepted = sum(log.record("impressions", {"id": str(n), "time": time.time()})
                   for n in range(20_000))
    assert time.perf_counter() - started < 2.0  # never waits for the disk
    assert log.pending <= 1000 and sum(dropped) == 20_000 - accepted > 0
    log.stop()
    assert log.sinks[0].count == accepted  # everything accepted is written


def test_a_failing_sink_is_retried(tmp_path):
    class Flaky(FileSink):
        fails = 2

        def write(self, kind, events):
            if Flaky.fails:
                Flaky.fails -= 1
                raise OSError("disk full")
            super().write(kind, events)

    log = EventLog([Flaky(tmp_path)], interval=0.05)
    for n in range(10):
        log.record("impressions", {"id": str(n), "time": time.time()})
    deadline = time.monotonic() + 5
    while log.written["impressions"] < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.stop()
    assert sorted(int(e["id"]) for e in written(tmp_path)) == list(range(10))


# ------------------------------------------------------------- over HTTP, CherryPy


@pytest.fixture
def serve(published, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPRECS_EVENTS_INTERVAL", "0.2")
    procs = []

    def start(workers=1):
        monkeypatch.setenv("SHOPRECS_SERVICE_WORKERS", str(workers))
        settings = published.replace(service_port=free_port(),
                                       experiment_name="exp1", experiment_arms=ARMS)
        procs.append(start_service(settings, tmp_path / f"service{len(procs)}.log"))
        return procs[-1], f"http://127.0.0.1:{settings.service.port}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


PHONES = [f"7916{n:07d}" for n in range(40)]


def arms(base) -> dict[str, str]:
    return {p: requests.get(f"{base}/users/{quote(p)}/recommendations",
                            timeout=5).headers["X-Experiment-Arm"] for p in PHONES}


@pytest.mark.slow
def test_arms_are_stable_across_workers_and_restarts(serve):
    proc, base = serve(workers=2)
    first = arms(base)  # a new connection per request: both workers answer
    assert set(first.values()) == {"control", "popular"}
    assert arms(base) == first
    proc.terminate()
    proc.wait(timeout=30)
    _, base = serve(workers=1)
    assert arms(base) == first


@pytest.mark.slow
def test_a_worker_killed_mid_stream_loses_at_most_its_last_batch(serve, published):
    interval = 0.2  # events.interval of the `serve` fixture
    proc, base = serve()
    answered: list[tuple[str, float]] = []  # (recommendation id, when it was answered)
    stop = threading.Event()

    def stream():
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    resp = http.get(f"{base}/users/{SHOPPER}/recommendations", timeout=5)
                except requests.RequestException:
                    return  # the kill
                answered.append((resp.headers["X-Recommendation-Id"], time.monotonic()))

    clients = [threading.Thread(target=stream) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(2.0)  # requests flowing, the writer writing every interval
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    stop.set()
    for client in clients:
        client.join()
    kept = {e["id"] for e in written(published.root)}
    ids = {rec_id for rec_id, _ in answered}
    lost = ids - kept
    assert len(answered) > 200 and kept <= ids  # a stream, and no phantom impression
    # what was lost was answered in the last moments: the batch the writer had not yet
    # written (one interval, and the one being written when the kill came)
    recent = {rec_id for rec_id, when in answered if when > killed - 2 * interval - 0.1}
    assert lost <= recent, sorted(when for rec_id, when in answered if rec_id in lost - recent)
    assert len(kept) >= len(answered) - len(recent) > 0


def test_metrics_count_written_and_dropped_events(app):
    client = app.test_client()
    for _ in range(3):
        client.get(f"/users/{SHOPPER}/recommendations")
    app.extensions["shoprecs.events"].flush()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'shoprecs_events_written_total{kind="impressions"} 3.0' in text
    events = app.extensions["shoprecs.events"]
    events.max_pending = 0
    client.get(f"/users/{SHOPPER}/recommendations")
    assert client.get("/users/x/recommendations").status_code == 400  # no impression
    text = client.get("/metrics").get_data(as_text=True)
    assert 'shoprecs_events_dropped_total{kind="impressions"} 1.0' in text


def test_requests_keep_working_when_events_are_off(published):
    settings = published.replace(events_enabled=False)
    client = create_app({"TESTING": True, "SETTINGS": settings}).test_client()
    resp = client.get(f"/users/{SHOPPER}/recommendations")
    assert resp.status_code == 200 and resp.headers["X-Recommendation-Id"]
    event = {**GOOD, "recommendationId": resp.headers["X-Recommendation-Id"]}
    assert client.post("/events", json={"events": [event]}).status_code == 503
    assert not (published.root / "events").exists()


def test_feedback_names_only_answers_this_service_gave(app, published):
    client = app.test_client()
    issued = client.get(f"/users/{SHOPPER}/recommendations").headers["X-Recommendation-Id"]
    other = create_app({"TESTING": True, "SETTINGS": published.replace(
        privacy_hmac_key="another shop")})  # another service's ids
    for forged in (issued[:-1] + ("0" if issued[-1] != "0" else "1"),
                   other.extensions["shoprecs.recommendation_ids"]()):
        resp = client.post("/events", json={"events": [{**GOOD, "recommendationId": issued},
                                                       {**GOOD, "eventId": "e-2",
                                                        "recommendationId": forged}]})
        assert resp.status_code == 400, resp.get_json()
        assert resp.get_json()["error"]["code"] == "unknown_recommendation"
        assert "events.1.recommendationId" in resp.get_json()["error"]["message"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'shoprecs_events_refused_total{reason="unknown_recommendation"} 4.0' in text
    # a second worker of the same service (the same key) takes the first one's ids
    sibling = create_app({"TESTING": True, "SETTINGS": app.extensions["shoprecs.settings"]})
    event = {**GOOD, "recommendationId": issued}
    assert sibling.test_client().post("/events", json={"events": [event]}).status_code == 202


def test_a_flood_is_refused_past_the_rate_limit_and_the_daily_cap(published):
    settings = published.replace(events_rate_limit="5/minute",
                                   events_max_feedback_mb_per_day=0.001)  # 1 KiB a day
    app = create_app({"TESTING": True, "SETTINGS": settings})
    client = app.test_client()
    rec_id = client.get(f"/users/{SHOPPER}/recommendations").headers["X-Recommendation-Id"]

    def post(n: int, address: str = "203.0.113.1"):
        events = [{**GOOD, "eventId": f"{address}-{n}-{i}", "recommendationId": rec_id}
                  for i in range(2)]
        return client.post("/events", json={"events": events},
                           environ_base={"REMOTE_ADDR": address})

    answers = [post(n) for n in range(4)]  # 2 events each: the third post passes 5/minute
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert answers[2].get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(answers[2].headers["Retry-After"]) <= 60
    assert post(0, "203.0.113.2").status_code == 202  # another client has its own limit
    app.extensions["shoprecs.events"].flush()
    accepted = {e["id"] for e in written(published.root, "feedback")}
    assert len(accepted) == 6  # everything answered 202 was written
    for n in range(20):  # past the day's kilobyte, from any client
        capped = post(n, f"198.51.100.{n}")
        if capped.status_code == 429:
            break
        app.extensions["shoprecs.events"].flush()
    assert capped.get_json()["error"]["code"] == "daily_cap"
    assert int(capped.headers["Retry-After"]) <= 86400
    assert sum(p.stat().st_size for p in (published.root / "events" / "feedback")
               .rglob("*.jsonl")) < 1024 + 600  # at most one post past the cap


def test_threads_record_concurrently_without_losing_any(tmp_path):
    log = EventLog([FileSink(tmp_path)], interval=0.01, batch=50)

    def record(t):
        for n in range(500):
            log.record("impressions", {"id": f"{t}-{n}", "time": time.time()})

    threads = [threading.Thread(target=record, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.stop()
    ids = [e["id"] for e in written(tmp_path)]
    assert len(ids) == len(set(ids)) == 4000  # each once
