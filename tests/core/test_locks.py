"""One writing run at a time per warehouse (core/locks.py): a second run waits or fails
with the holder named; a killed holder never blocks the next run; the MongoDB lease."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.errors import WarehouseBusy
from core.locks import MongoLease, holder, warehouse_lock

HOLD = textwrap.dedent("""
    import sys, time
    from core.config import Settings
    from core.locks import warehouse_lock
    with warehouse_lock(Settings().replace(warehouse_root=sys.argv[1])):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def hold(root, seconds: float) -> subprocess.Popen:
    """Another process holding the lock of `root` for `seconds` (once it printed 'held')."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_fails_fast_naming_the_holder(settings):
    proc = hold(settings.root, 30)
    try:
        with pytest.raises(WarehouseBusy, match=rf"pid {proc.pid} on .*lock.wait_seconds"):
            with warehouse_lock(settings, wait=0):
                pass
        assert holder(settings.root)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_waits_for_the_first(settings, caplog):
    proc = hold(settings.root, 2)
    started = time.monotonic()
    with warehouse_lock(settings, wait=60):
        waited = time.monotonic() - started
        assert holder(settings.root)["pid"] == os.getpid()
    assert proc.wait() == 0 and waited > 1
    assert f"pid {proc.pid}" in caplog.text and "waiting for the warehouse" in caplog.text
    assert holder(settings.root) is None  # released


def test_a_killed_holder_leaves_no_lock_behind(settings):
    proc = hold(settings.root, 300)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert holder(settings.root)["pid"] == proc.pid  # its note is stale ...
    with warehouse_lock(settings, wait=0):  # ... but the lock went with the process
        assert holder(settings.root)["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_a_process_and_one_per_warehouse(settings):
    with warehouse_lock(settings, wait=0):
        with warehouse_lock(settings, wait=0):  # the night's steps take it again
            pass
        assert holder(settings.root)["pid"] == os.getpid()  # still held
    other = warehouse_lock(settings.replace(warehouse_root=str(
        settings.root / "elsewhere")), wait=0)
    with other:  # another warehouse is another lock
        pass


def test_the_mongodb_lease_is_exclusive_renewed_and_taken_over_when_expired():
    import mongomock

    db = mongomock.MongoClient()["shoprecs"]
    first, second = MongoLease(db, "warehouse", 0.6), MongoLease(db, "warehouse", 0.6)
    first.acquire(wait=0)
    with pytest.raises(WarehouseBusy, match="MongoDB lease"):
        second.acquire(wait=0)
    time.sleep(1.0)  # past one lease: the first renewed it
    assert not second.try_acquire()
    first._stop.set()  # the first is "killed": it stops renewing
    first._renewer.join()
    time.sleep(0.7)
    second.acquire(wait=0)  # expired: taken over
    assert db["locks"].find_one()["owner"] == second.owner
    second.release()
    assert db["locks"].count_documents({}) == 0


def test_commands_that_write_take_the_lock(settings):
    """`shoprecs clean` while another run holds the warehouse: one line, exit code 7."""
    proc = hold(settings.root, 60)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shoprecs.cli", "clean", "--date", "2024-01-01"],
            env={**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(settings.root),
                 "SHOPRECS_LOCK_WAIT_SECONDS": "0"}, capture_output=True, text=True,
            timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert done.returncode == 7, done.stderr
    assert f"error: the warehouse {settings.root.resolve()} is busy" in done.stderr
    assert "Traceback" not in done.stderr



def test_threads_of_one_process_take_turns_and_each_re_enters_its_own(settings):
    import threading

    inside, most, order = [0], [0], []

    def hold(name: str) -> None:
        with warehouse_lock(settings, wait=30):
            with warehouse_lock(settings, wait=0):  # the same thread again: no wait
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                order.append(name)
                time.sleep(0.2)
                inside[0] -= 1

    threads = [threading.Thread(target=hold, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(order) == ["t0", "t1", "t2", "t3"] and most[0] == 1
