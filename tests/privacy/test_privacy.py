"""Personal data under control (privacy/): raw retention, erasure on request, key
rotation, on one generated shop's nights (its bus kept running for backfills)."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import pipeline
from core.config import Settings
from core.errors import ConfigError
from core.phones import PHONE_LIKE, InvalidPhone, normalize, rekey, user_key
from core.stores import connect
from models import train
from pipeline.mongo import publish_version
from privacy import erasure, retention, rotation
from service import create_app
from shoprecs.demo import free_port, start_simulator
from simulation.generator import GeneratorParams, format_phone, generate
from tests.conftest import TEST_KEY

pytestmark = [pytest.mark.spark]
FIRST, LAST = dt.date(2024, 1, 1), dt.date(2024, 1, 6)
ADMIN = "admin-key"


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    """Six nights of a generated shop, raw orders kept 3 days: days before 01-03 are past
    retention after the last night."""
    params = GeneratorParams(start=FIRST, days=6, orders=1500, shoppers=150, goods=120,
                             clusters=3, items_per_cluster=25, bundles=4, bundle_rate=0.4,
                             seed=5)
    orders, goods, _ = generate(params)
    s = Settings().replace(warehouse_root=str(tmp_path_factory.mktemp("privacy") / "warehouse"),
        privacy_hmac_key=TEST_KEY, bus_url=f"http://127.0.0.1:{free_port()}", bus_per_page=200,
        bus_retries=1, train_window_days=6, train_holdout_days=0,
        privacy_raw_retention_days=3, admin_api_keys=ADMIN, service_rules_interval=0.0)
    bus = start_simulator(orders, goods, s)
    spark.catalog.clearCache()
    try:
        pipeline.run(s, FIRST, LAST, spark)
        yield s, orders
    finally:
        bus.stop()


@pytest.fixture
def copy(shop, tmp_path):
    """The shop's warehouse, copied for one test to change."""
    s, orders = shop
    shutil.copytree(s.root, tmp_path / "warehouse")
    return s.replace(warehouse_root=str(tmp_path / "warehouse")), orders


def busiest(orders) -> str:
    return Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"]).most_common(1)[0][0]


def clean_rows(root: Path) -> list[tuple]:
    table = ds.dataset(root / "clean" / "orders", format="parquet", partitioning="hive").to_table()
    return sorted(zip(*(table[c].to_pylist() for c in
                        ("dt", "order_id", "goods_id", "user_key", "quantity")), strict=True),
                  key=lambda r: tuple("" if v is None else str(v) for v in r))


PHONE = re.compile(r"(?<![0-9a-f])" + PHONE_LIKE.pattern + "(?![0-9a-f])")


def phones_in(text: str) -> set[str]:
    """Every phone number in a text, in any spelling (not the digits inside a hex key)."""
    found = set()
    for match in PHONE.finditer(text):
        try:
            found.add(normalize(match.group(0)))
        except InvalidPhone:
            pass
    return found


def user_ids(root: Path, key: str) -> set[int]:
    """The shopper's integer ids in every model version's id mapping (ALS knows them by it)."""
    found = set()
    for path in root.glob("models/*/ids/users/*.parquet"):
        table = pq.read_table(path, partitioning=None).to_pylist()
        found |= {row["id"] for row in table if row["key"] == key}
    return found


def _values(column) -> set:
    """Every value of a Parquet column, lists flattened."""
    values = column.to_pylist()
    return {v for value in values for v in (value if isinstance(value, list) else [value])}


def traces(root: Path, digits: str, key: str, ids: set[int] = frozenset()) -> list[str]:
    """Every file of the warehouse that holds the phone (any spelling) or the key, in any
    column of any Parquet file or anywhere in any other file (the MLflow store included),
    and every user-keyed file (ALS userFactors, id mappings) holding one of the shopper's
    integer `ids`; but the register of requests."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = str(path.relative_to(root))
        if rel.startswith("privacy/forgotten") or path.name.endswith(".crc"):
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path, partitioning=None)
            values = set().union(*(_values(table[c]) for c in table.column_names))
            numeric = "/als/userFactors/" in rel or "/ids/users/" in rel
            if key in values or digits in values or (numeric and ids & _values(table["id"])):
                hits.append(rel)
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        if key in text or digits in phones_in(text):
            hits.append(rel)
    return hits


def mongo_traces(db, key: str) -> list[str]:
    """Every MongoDB collection holding a document that mentions the key, but the register."""
    return [name for name in db.list_collection_names() if name != "forgotten"
            and any(key in json.dumps(doc, default=str) for doc in db[name].find())]


def recommendations(client, phone: str):
    resp = client.get(f"/users/{quote(phone)}/recommendations?limit=10")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.headers["X-Recommendation-Source"], [i["goodsId"] for i in resp.get_json()]


def test_raw_orders_past_retention_keep_no_phone_and_clean_the_same(spark, copy):
    s, orders = copy
    landing = s.root / "landing" / "orders"
    for day in sorted(landing.glob("dt=*")):
        text = (day / "orders.jsonl").read_text()
        manifest = json.loads((day / "_manifest.json").read_text())
        if day.name < "dt=2024-01-03":  # the night of 01-06 keeps 3 days
            assert not phones_in(text) and "retention" in manifest, day.name
            assert '"_user_key":"' in text
        else:
            assert phones_in(text) and "retention" not in manifest, day.name
    for day in sorted((s.root / "quarantine").glob("dt=*")):
        if day.name < "dt=2024-01-03":
            assert not any(phones_in(p.read_text()) for p in day.glob("*.json"))
    before = clean_rows(s.root)
    pipeline.clean(s, FIRST, LAST, spark)  # a re-clean reads the keys where phones were
    assert clean_rows(s.root) == before
    # a dry run says what a later day would rewrite, and changes nothing
    snapshot = {p: p.stat().st_mtime_ns for p in landing.rglob("*")}
    report = retention.retention(s, LAST + dt.timedelta(days=2))
    assert report["days"] == ["2024-01-03", "2024-01-04"] and not report["applied"]
    assert report["orders"] == sum(o["date"][:10] in report["days"] for o in orders)
    assert {p: p.stat().st_mtime_ns for p in landing.rglob("*")} == snapshot
    # applied, it leaves the rows that train as they were: the version stays, and the
    # next night retrains nothing; an erasure changes them, and the next night retrains
    version = train.fingerprint(s.root, LAST, {})
    retention.retention(s, LAST + dt.timedelta(days=2), apply=True)
    assert train.fingerprint(s.root, LAST, {}) == version
    erasure.forget(s, format_phone(busiest(orders), 0))
    assert train.fingerprint(s.root, LAST, {}) != version


def test_forget_erases_every_trace_and_the_service_forgets_at_once(spark, copy):
    from tests.engine._mongo_helpers import python_write

    s, orders = copy
    digits = busiest(orders)
    key = user_key(digits, s.privacy.keys)
    phone = format_phone(digits, 1)
    # MongoDB is a store too (mongomock), and serves: its impressions as well
    s = s.replace(publish_store="both", mongo_uri=f"mongomock://{key[:8]}")
    publish_version(spark, s, (s.root / "models" / "LATEST").read_text().strip(),
                    write=python_write)
    db = connect(s.mongo.uri)[s.mongo.db]
    client = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    mongo_client = create_app({"TESTING": True, "SETTINGS": s.replace(
        service_store="mongo", events_interval=0.05)})
    assert recommendations(client, phone)[0] == "personalized"
    shown = mongo_client.test_client().get(f"/users/{quote(phone)}/recommendations")
    assert mongo_client.test_client().post("/events", json={"events": [{
        "eventId": "e-1", "type": "click", "goodsId": 1, "phone": phone,
        "recommendationId": shown.headers["X-Recommendation-Id"]}]}).status_code == 202
    mongo_client.extensions["shoprecs.events"].flush()
    ids = user_ids(s.root, key)
    assert ids and set(mongo_traces(db, key)) >= {"impressions", "feedback"}
    found = set(traces(s.root, digits, key, ids))  # it is everywhere before (the
    # MLflow store and its artifacts, searched as well, never held it)
    assert {f.split("/")[0] for f in found} == {"landing", "clean", "models", "serving",
                                                "events"}
    assert any("/als/userFactors/" in f for f in found)
    assert any(f.startswith("serving/") and "/history/" in f for f in found)

    resp = client.post("/admin/forget", json={"phone": phone}, headers={"X-API-Key": ADMIN})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["shopper"] == key[:12]
    removed = follow(client, resp.get_json())["removed"]
    assert all(removed[zone] > 0 for zone in ("landing", "clean", "models", "serving"))
    # the worker that loaded the shopper answers them as unknown now, as does a new one
    assert recommendations(client, phone)[0] == "popular"
    fresh = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    assert recommendations(fresh, format_phone(digits, 3))[0] == "popular"
    assert traces(s.root, digits, key, ids) == []
    assert mongo_traces(db, key) == []

    # neither a re-clean nor a backfill that fetches the old days again brings them back
    pipeline.extract(s, FIRST, LAST, refetch=True)
    pipeline.clean(s, FIRST, LAST, spark)
    assert traces(s.root, digits, key) == []
    assert {r[3] for r in clean_rows(s.root)} - {None}  # the others stay

    again = erasure.forget(s, format_phone(digits, 0))
    assert not again["new_request"] and not any(again["removed"].values())
    bad = client.post("/admin/forget", json={"phone": "not a phone"},
                      headers={"X-API-Key": ADMIN})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_phone"
    assert client.post("/admin/forget", json={"phone": phone}).status_code == 401


def test_shoprecs_forget_on_the_command_line_erases_every_trace(copy):
    s, orders = copy
    digits = Counter(normalize(o["clientTel"]) for o in orders
                     if o["clientTel"]).most_common(2)[1][0]
    key = user_key(digits, s.privacy.keys)
    ids = user_ids(s.root, key)
    assert ids and traces(s.root, digits, key, ids)
    done = subprocess.run(
        [sys.executable, "-m", "shoprecs.cli", "forget", format_phone(digits, 3)],
        env={**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(s.root),
             "SHOPRECS_PRIVACY_HMAC_KEY": TEST_KEY}, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"forgot shopper {key[:12]}" in done.stdout and digits not in done.stdout
    assert traces(s.root, digits, key, ids) == []


def follow(client, job: dict, until=("done",), seconds: float = 60) -> dict:
    """GET /admin/forget/<job> until its state is one of `until` (or the deadline)."""
    deadline = time.monotonic() + seconds
    while True:
        state = client.get(job["follow"] if "follow" in job else f"/admin/forget/{job['job']}",
                           headers={"X-API-Key": ADMIN}).get_json()
        if state["state"] in until or time.monotonic() > deadline:
            assert state["state"] in until, state
            return state
        time.sleep(0.05)


def hold_warehouse(s) -> subprocess.Popen:
    """Another process (a nightly run, say) holding the warehouse until killed."""
    hold = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from core.config import Settings; "
         "from core.locks import warehouse_lock\nwith warehouse_lock(Settings().replace("
         "warehouse_root=sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
         str(s.root)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert hold.stdout.readline().strip() == "held"
    return hold


def test_a_request_during_a_run_waits_for_it_and_is_erased_when_it_ends(copy):
    s, orders = copy
    digits = busiest(orders)
    key = user_key(digits, s.privacy.keys)
    phone = format_phone(digits, 2)
    client = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    hold = hold_warehouse(s)
    try:
        job = client.post("/admin/forget", json={"phone": phone},
                          headers={"X-API-Key": ADMIN}).get_json()
        waiting = follow(client, job, until=("waiting",))
        assert f"pid {hold.pid}" in waiting["detail"]  # says whom it waits for
        assert recommendations(client, phone)[0] == "popular"  # answered as unknown at once
        assert traces(s.root, digits, key)  # not erased yet: the run holds the data
    finally:
        hold.kill()
        hold.wait()
    assert follow(client, job)["removed"]["landing"] > 0  # promptly, not by the night
    assert traces(s.root, digits, key) == []
    assert pipeline.privacy(s, LAST)["erased"] == 0


def test_a_request_a_long_run_outlasts_is_erased_by_the_night(copy):
    s, orders = copy
    s = s.replace(lock_wait_seconds=0.5)
    digits = busiest(orders)
    key = user_key(digits, s.privacy.keys)
    client = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    hold = hold_warehouse(s)
    try:
        job = client.post("/admin/forget", json={"phone": format_phone(digits, 2)},
                          headers={"X-API-Key": ADMIN}).get_json()
        assert "privacy step" in follow(client, job, until=("deferred",))["detail"]
    finally:
        hold.kill()
        hold.wait()
    assert pipeline.privacy(s, LAST)["erased"] == 1  # the night's privacy task
    assert traces(s.root, digits, key) == []
    assert pipeline.privacy(s, LAST)["erased"] == 0


def test_concurrent_requests_are_all_carried_out_one_after_another(copy):
    s, orders = copy
    shoppers = [d for d, _ in Counter(normalize(o["clientTel"]) for o in orders
                                      if o["clientTel"]).most_common(10)]
    workers = [create_app({"TESTING": True, "SETTINGS": s}).test_client() for _ in range(2)]
    jobs = [None] * len(shoppers)

    def ask(n: int) -> None:
        jobs[n] = workers[n % 2].post("/admin/forget", json={"phone": format_phone(
            shoppers[n], n)}, headers={"X-API-Key": ADMIN}).get_json()

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(shoppers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, job in enumerate(jobs):  # any worker answers for any job
        assert follow(workers[1 - n % 2], job)["removed"]["clean"] > 0, job
    for digits in shoppers:
        assert traces(s.root, digits, user_key(digits, s.privacy.keys)) == []
    assert pipeline.privacy(s, LAST)["erased"] == 0  # nothing left for the night


def test_a_rotated_key_keeps_every_shoppers_history(spark, copy, tmp_path):
    s, orders = copy
    shoppers = [d for d, _ in Counter(normalize(o["clientTel"]) for o in orders
                                      if o["clientTel"]).most_common(15)]
    client = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    before = {d: recommendations(client, format_phone(d, 0)) for d in shoppers}
    old_rows = clean_rows(s.root)
    old_ids = {r["key"]: r["id"] for r in ds.dataset(
        s.root / "models" / (s.root / "models" / "LATEST").read_text().strip()
        / "ids" / "users").to_table().to_pylist()}

    # `shoprecs rotate-key` SIGKILLed at points through its pass (after a few files, in
    # the middle, near the end), run again after each kill: it finishes, re-keying each
    # file once (the crashed warehouse ends equal to one rotated without a kill)
    crashed = s.replace(warehouse_root=str(tmp_path / "crashed"))
    shutil.copytree(s.root, crashed.root)
    kills = kill_rotation(crashed, "the-new-key", at=(1, 0.5, 0.9))
    assert len(kills) == 3 and kills == sorted(kills), kills  # three kills, mid-pass
    assert rotate_key(crashed, "the-new-key").wait(timeout=300) == 0
    assert not (crashed.root / rotation.ROTATION).exists()
    rotation.rotate(s, "the-new-key")

    with pytest.raises(ConfigError, match="privacy.key_rotations"):
        pipeline.clean(s, LAST, LAST, spark)  # the old configuration is refused
    rotated = s.replace(privacy_key_rotations="the-new-key")
    new_rows = clean_rows(rotated.root)
    assert new_rows == sorted(
        [r[:3] + (None if r[3] is None else rekey(r[3], "the-new-key"),) + r[4:]
         for r in old_rows], key=lambda r: tuple("" if v is None else str(v) for v in r))
    assert clean_rows(crashed.root) == new_rows
    new_ids = {r["key"]: r["id"] for r in ds.dataset(
        rotated.root / "models" / (rotated.root / "models" / "LATEST").read_text()
        .strip() / "ids" / "users").to_table().to_pylist()}
    assert new_ids == {rekey(k, "the-new-key"): i for k, i in old_ids.items()}
    client = create_app({"TESTING": True, "SETTINGS": rotated}).test_client()
    assert {d: recommendations(client, format_phone(d, 0)) for d in shoppers} == before
    # the next clean keys new orders under the chain: the same keys as the rotated ones
    pipeline.clean(rotated, FIRST, LAST, spark)
    assert clean_rows(rotated.root) == new_rows
    assert re.fullmatch(r"[0-9a-f]{64}", new_rows[0][3] or "0" * 64)
    # and the next rotation, killed too, completes from the crashed warehouse
    again = crashed.replace(privacy_key_rotations="the-new-key")
    assert kill_rotation(again, "a-third-key", at=(0.5,))
    assert rotate_key(again, "a-third-key").wait(timeout=300) == 0
    third = again.replace(privacy_key_rotations="the-new-key,a-third-key")
    client = create_app({"TESTING": True, "SETTINGS": third}).test_client()
    assert {d: recommendations(client, format_phone(d, 0)) for d in shoppers} == before


def rotate_key(s, new_key: str) -> subprocess.Popen:
    """`shoprecs rotate-key` for the warehouse of `s`, started (Popen; .wait() for it)."""
    env = {**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(s.root),
           "SHOPRECS_PRIVACY_HMAC_KEY": s.privacy.hmac_key,
           "SHOPRECS_PRIVACY_KEY_ROTATIONS": s.privacy.key_rotations,
           "SHOPRECS_PRIVACY_NEW_KEY": new_key}
    return subprocess.Popen([sys.executable, "-m", "shoprecs.cli", "rotate-key"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_rotation(s, new_key: str, at: tuple[float, ...]) -> list[int]:
    """Run the rotation again and again, each run SIGKILLed once the journal records a
    share `at[n]` of the files re-keyed (an int: that many files); returns how many files
    were done at each kill."""
    journal = s.root / rotation.ROTATION
    total = sum(1 for p in s.root.rglob("*") if p.is_file() and (
        p.suffix in (".parquet", ".jsonl") or p.name == "orders.jsonl"))
    kills = []
    for share in at:
        target = share if isinstance(share, int) else int(total * share)
        proc = rotate_key(s, new_key)
        while proc.poll() is None:
            try:
                done = len(json.loads(journal.read_text())["done"])
            except (OSError, ValueError):
                done = 0
            if done >= target:
                proc.kill()
                proc.wait()
                kills.append(done)
                break
        assert proc.returncode == -signal.SIGKILL, (share, proc.stderr.read()[-2000:])
    return kills


def test_a_warehouse_under_a_hidden_folder_keeps_its_files_in_reach(tmp_path):
    """Erasure and rotation skip Spark's hidden staging folders, not a warehouse that lives
    under ~/.local or the like."""
    from privacy._rewrite import parquet_files

    root = tmp_path / ".local" / "warehouse"
    kept = root / "clean" / "orders" / "dt=2024-01-01" / "part-0.parquet"
    staged = root / "clean" / ".spark-staging-1" / "part-0.parquet"
    for path in (kept, staged):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    assert list(parquet_files(root)) == [kept]
