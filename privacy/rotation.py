"""Key rotation: every stored shopper key re-keyed under one more key of the chain.

`shoprecs rotate-key` re-keys landing (`_user_key`), every Parquet file with a `user_key` or
id-mapping `key` column, the events, the register and MongoDB in one pass, journaled in
privacy/rotation.json: a killed rotation run again with the same key finishes without
re-keying any file twice. Afterwards the configuration appends the new key to
privacy.key_rotations (docs/privacy.md).

Run with: SHOPRECS_PRIVACY_NEW_KEY=... shoprecs rotate-key
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import ConfigError
from core.files import flock
from core.locks import warehouse_lock
from core.phones import key_fingerprint, rekey
from engine import index
from engine.forgotten import registers
from etl.clean import cleaned_days, mark_cleaned
from privacy._rewrite import (
    KEYED_COLLECTIONS,
    NOT_A_KEY,
    edited_events,
    edited_landing,
    event_files,
    landed_days,
    mongo_db,
    parquet_files,
    replace,
    stamp,
)
from privacy.keys import chain_of, check_keys, record_chain

log = logging.getLogger(__name__)

ROTATION = Path("privacy") / "rotation.json"


def rotate(settings, new_key: str) -> dict:
    """Re-key every stored key under one more key of the chain (`core.phones.rekey`), in
    one pass, resumable: privacy/rotation.json journals each file, so a killed rotation
    run again with the same key finishes without re-keying anything twice. Afterwards
    the configuration must append `new_key` to privacy.key_rotations."""
    if not new_key or new_key in settings.privacy.keys:
        raise ConfigError("the new key must be set and differ from every key in use "
                          "(SHOPRECS_PRIVACY_NEW_KEY)")
    root = settings.root
    target = [*chain_of(settings), key_fingerprint(new_key)]
    counts = dict.fromkeys(("landing", "parquet", "events", "register", "mongodb"), 0)
    with warehouse_lock(settings):
        check_keys(settings, adopt=True)
        journal_path = root / ROTATION
        journal = json.loads(journal_path.read_text()) if journal_path.exists() else {
            "to": target, "staged": [], "done": []}
        if journal["to"] != target:
            raise ConfigError("an unfinished rotation to another key is journaled in "
                              f"{journal_path}: finish it with that key first")

        def save():
            replace(journal_path, json.dumps(journal).encode())

        save()
        new = lambda k: k if k in NOT_A_KEY else rekey(k, new_key)  # noqa: E731

        def once(path: Path, produce: Callable[[], tuple[bytes, int]]) -> bool:
            """Re-key one file exactly once, whatever kill came before: `produce` gives its
            new bytes and whether any key changed."""
            name = str(path.relative_to(root))
            staged = path.with_name(f".{path.name}.rekey.tmp")
            if name in journal["done"]:
                return False
            if name not in journal["staged"]:
                data, changed = produce()
                if not changed:
                    journal["done"].append(name)
                    save()
                    return False
                staged.write_bytes(data)
                journal["staged"].append(name)
                save()
            if staged.exists():  # gone if a kill came after the rename
                os.replace(staged, path)
            path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
            journal["staged"].remove(name)
            journal["done"].append(name)
            save()
            return True

        def landing(order: dict) -> bool:
            if order.get("_user_key") in NOT_A_KEY:
                return False
            order["_user_key"] = new(order["_user_key"])
            return True

        for day in landed_days(root):
            orders = day / "orders.jsonl"
            if once(orders, lambda day=day: edited_landing(day, landing, lambda line: line)):
                counts["landing"] += 1
                # the keys changed: the next night retrains
                sha256 = stamp(day, orders.read_bytes())
                if day.name[3:] in cleaned_days(root):
                    mark_cleaned(root, day.name[3:], sha256)

        def parquet(path: Path) -> tuple[bytes, int]:
            table = pq.read_table(path, partitioning=None)
            column = "key" if path.relative_to(root).parts[2:4] == ("ids", "users") \
                else "user_key"
            if column not in table.column_names:
                return b"", 0
            keys = pa.array([new(k) for k in table[column].to_pylist()], pa.string())
            table = table.set_column(table.column_names.index(column),
                                     table.schema.field(column), keys)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="snappy")
            return sink.getvalue().to_pybytes(), 1

        for path in parquet_files(root):
            counts["parquet"] += once(path, lambda path=path: parquet(path))
        for manifest in (root / "serving").glob("*/manifest.json"):
            index.rebuild(manifest.parent)  # the mapped arrays, from the re-keyed Parquet

        def events(event: dict) -> dict | bool:
            return {**event, "shopper": new(event["shopper"])} if event.get("shopper") else True

        for path in event_files(root):
            with flock(path):
                counts["events"] += once(path, lambda path=path: edited_events(path, events))
        for register in registers(settings):
            for key in list(register.read()):
                if f"register:{key}" not in journal["done"]:
                    register.rename(key, new(key))
                    journal["done"].append(f"register:{key}")
                    save()
                    counts["register"] += 1
        db = mongo_db(settings)
        if db is not None:
            counts["mongodb"] = _rotate_mongo(db, new, journal, save, target[-1])
        record_chain(root, target)
        journal_path.unlink()
    log.info("re-keyed the warehouse %s: %s", root, counts)
    return counts


def _rotate_mongo(db, new, journal: dict, save, mark: str) -> int:
    """user_recs_<v>, history_<v>: re-keyed into a staging collection renamed over the old
    one (atomic;
    a killed run rebuilds the staging copy); impressions and feedback: each document
    re-keyed once, marked with the target chain. Each collection journaled when done."""
    moved = 0
    for name in sorted(db.list_collection_names()):
        if f"mongodb:{name}" in journal["done"]:
            continue
        coll = db[name]
        if name.startswith(KEYED_COLLECTIONS):
            staging = db[f"{name}.rekey"]
            staging.drop()
            docs = [{**doc, "_id": new(doc["_id"])} for doc in coll.find()]
            if docs:
                staging.insert_many(docs, ordered=False)
                staging.rename(name, dropTarget=True)
            moved += len(docs)
        elif name in ("impressions", "feedback"):
            for doc in list(coll.find({"shopper": {"$ne": None}, "_rekeyed": {"$ne": mark}},
                                      {"shopper": 1})):
                coll.update_one({"_id": doc["_id"]}, {"$set": {
                    "shopper": new(doc["shopper"]), "_rekeyed": mark}})
                moved += 1
        else:
            continue
        journal["done"].append(f"mongodb:{name}")
        save()
    return moved
