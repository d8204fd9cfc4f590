"""Erasing a shopper on request: `shoprecs forget PHONE` and the service's erasure jobs.

Where shoppers appear (docs/privacy.md has the whole table): landing/ (the phone as the bus
sent it, or `_user_key` past retention), quarantine/ (masked phones), clean/, models/<v>/
and serving/<v>/ (`user_key`; models/<v>/ids/users `key` and its integer id in
als/userFactors; serving/<v>/index/, rebuilt from the Parquet), events/ (`shopper`), and
MongoDB's user_recs_<v>, history_<v>, impressions and feedback when it is a store. `erase`
removes the shopper from all of them (their orders stay, as guest baskets); the request
itself (key and time) goes into the register (engine/forgotten.py) so that the service
answers them as unknown at once and no later backfill lands their phone again (`scrub`).

Run with: shoprecs forget "+7 (905) 545-5709"
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.bus_profile import BusProfile
from core.locks import warehouse_lock
from core.phones import InvalidPhone, PhoneRules, normalize, shopper_key, user_key
from engine import index
from engine.forgotten import FileRegister, registers
from privacy._rewrite import (
    KEYED_COLLECTIONS,
    NOT_A_KEY,
    column_in,
    event_files,
    landed_days,
    mask_phone,
    mongo_db,
    parquet_files,
    replace,
    rewrite_events,
    rewrite_landing,
    rewrite_parquet,
    rewrite_text,
    spells,
    utc_now,
)
from privacy.keys import check_keys

log = logging.getLogger(__name__)

PENDING = Path("privacy") / "pending"  # erasures recorded, not yet carried out


def erase(settings, digits: str | None, key: str) -> dict:
    """Remove the shopper (`digits`, their normalized phone when known, and `key`) from
    every zone; their orders stay as guest baskets. Idempotent. Counts what it changed."""
    root = settings.root
    rules = PhoneRules.from_settings(settings.phone)
    phone_field = BusProfile.from_settings(settings.bus).phone_field
    counts = dict.fromkeys(("landing", "quarantine", "clean", "models", "serving", "events",
                            "mongodb"), 0)

    def edit(order: dict) -> bool:
        if spells(order.get(phone_field), digits, rules) or order.get("_user_key") == key:
            order[phone_field] = None
            order.pop("_user_key", None)
            return True
        return False

    def edit_text(line: str) -> str:
        return mask_phone(line, digits, rules) if digits else line

    for day in landed_days(root):
        counts["landing"] += rewrite_landing(day, edit, edit_text)
    if digits:
        for path in sorted((root / "quarantine").rglob("*.json")):
            counts["quarantine"] += rewrite_text(path, lambda t: mask_phone(t, digits, rules))
    for path in parquet_files(root):
        zone = path.relative_to(root).parts[0]

        def drop(table: pa.Table, zone=zone, path=path):
            column = "key" if path.relative_to(root).parts[2:4] == ("ids", "users") \
                else "user_key"
            hit = column_in(table, column, [key])
            if hit is None:
                return None
            hits = pc.sum(hit).as_py()
            if zone == "clean":  # the orders stay, as a guest's
                return table.set_column(table.column_names.index("user_key"), "user_key",
                                        pc.if_else(hit, pa.scalar(None, pa.string()),
                                                   table["user_key"])), hits
            if column == "key":  # its ALS factors go with the mapping row
                _drop_factors(path.parents[2], table.filter(hit)["id"].to_pylist())
            return table.filter(pc.invert(hit)), hits
        counts[zone] += rewrite_parquet(path, drop)
    for manifest in (root / "serving").glob("*/manifest.json"):
        _recount(manifest)
        index.rebuild(manifest.parent)  # the arrays the service maps, without the shopper
    for path in event_files(root):
        counts["events"] += rewrite_events(
            path, lambda e: None if e.get("shopper") == key else True)
    db = mongo_db(settings)
    if db is not None:
        for name in db.list_collection_names():
            if name.startswith(KEYED_COLLECTIONS):
                counts["mongodb"] += db[name].delete_one({"_id": key}).deleted_count
            elif name in ("impressions", "feedback"):
                counts["mongodb"] += db[name].delete_many({"shopper": key}).deleted_count
    (root / PENDING / f"{key}.json").unlink(missing_ok=True)
    return counts


def _drop_factors(model: Path, ids: list[int]) -> None:
    """Remove the shopper's rows from the version's saved ALS model (userFactors)."""
    def drop(table: pa.Table):
        hit = column_in(table, "id", ids)
        return None if hit is None else (table.filter(pc.invert(hit)), len(ids))
    for path in sorted((model / "als" / "userFactors").glob("*.parquet")):
        rewrite_parquet(path, drop)


def _recount(manifest_path: Path) -> None:
    """serving/<v>/manifest.json's user_recs count after rows were removed (the service
    checks it on load)."""
    manifest = json.loads(manifest_path.read_text())
    counts = manifest.get("counts", {})
    folder = manifest_path.parent / "user_recs"
    if "user_recs" in counts and folder.exists():
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))
        if rows != counts["user_recs"]:
            counts["user_recs"] = rows
            replace(manifest_path, json.dumps(manifest, indent=2).encode())


def key_of(settings, phone: str) -> tuple[str, str]:
    """(normalized digits, user_key) of a phone in any format; ValueError says why not."""
    digits = normalize(phone, PhoneRules.from_settings(settings.phone))
    return digits, user_key(digits, settings.privacy.keys)


def record(settings, key: str) -> tuple[str, bool]:
    """Write the request into every register; (when it was first requested, new?)."""
    now = utc_now()
    new = any([register.add(key, now) for register in registers(settings)])  # a list: all registers
    return FileRegister(settings.root).read().get(key, now), new


def forget(settings, phone: str, wait: float | None = None, on_wait=None) -> dict:
    """`shoprecs forget <phone>`: record the request, then erase the shopper everywhere,
    under the warehouse lock (waiting `wait`, default lock.wait_seconds; `on_wait(holder)`
    is told whom it waits for)."""
    digits, key = key_of(settings, phone)
    with warehouse_lock(settings, wait, on_wait):
        check_keys(settings)
        requested_at, new = record(settings, key)
        removed = erase(settings, digits, key)
    log.info("forgot shopper %s...: %s", key[:8], removed)
    return {"key": key, "requested_at": requested_at, "new_request": new, "removed": removed}


def defer(settings, phone: str) -> dict:
    """The service's side of a request, before it erases: recorded in every register (the
    service answers the shopper as unknown from now on) and noted as pending, so that the
    nightly run's `erase_pending` finishes it if the service cannot (killed, or a run holds
    the warehouse for longer than lock.wait_seconds)."""
    digits, key = key_of(settings, phone)
    requested_at, new = record(settings, key)
    replace(settings.root / PENDING / f"{key}.json", json.dumps({"requested_at": requested_at}))
    return {"key": key, "requested_at": requested_at, "new_request": new, "pending": True}


def erase_pending(settings) -> list[str]:
    """Finish the erasures the service deferred (the nightly privacy task). Without their
    phones only the key is known: the landing zone is searched by `_user_key` and by
    the key of each raw phone."""
    done = []
    with warehouse_lock(settings):
        # a service process that had not yet re-read the register may have written a fresh
        # request's key in the seconds after its erasure: the next night looks again
        recent = {k for k, when in FileRegister(settings.root).read().items()
                  if when >= (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).isoformat()}
        if recent:
            for path in event_files(settings.root):
                rewrite_events(path, lambda e: None if e.get("shopper") in recent else True)
        for path in sorted((settings.root / PENDING).glob("*.json")):
            erase(settings, _digits_of(settings, path.stem), path.stem)
            done.append(path.stem)
    return done


def _digits_of(settings, key: str) -> str | None:
    """The normalized phone whose key is `key`, if a raw landed order still holds it."""
    rules = PhoneRules.from_settings(settings.phone)
    field = BusProfile.from_settings(settings.bus).phone_field
    for day in landed_days(settings.root):
        for line in (day / "orders.jsonl").read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, InvalidPhone, AttributeError, TypeError):
                digits = normalize(json.loads(line).get(field), rules)
                if user_key(digits, settings.privacy.keys) == key:
                    return digits
    return None


def scrub(settings, orders: list[dict], forgotten: dict[str, str]) -> int:
    """Extract's side: the phone of an order a forgotten shopper placed before their request
    is dropped before it lands (a backfill must not bring them back). Returns how many."""
    if not forgotten:
        return 0
    rules = PhoneRules.from_settings(settings.phone)
    profile = BusProfile.from_settings(settings.bus)
    field = profile.phone_field
    dropped = 0
    for order in orders:
        raw = order.get(field)
        if not isinstance(raw, str):
            continue
        key = shopper_key(raw, rules, settings.privacy.keys)
        when = forgotten.get(key) if key not in NOT_A_KEY else None
        if when is None:
            continue
        placed = profile.order_time(order) if profile.date_field else None
        if placed is None or placed.isoformat() <= when:
            order[field] = None
            dropped += 1
    return dropped


