"""Key rotation: every stored shopper key re-keyed under one more key of the chain.

`shoprecs rotate-key` re-keys landing (`_user_key`), every Parquet file with a `user_key` or
id-mapping `key` column, the events, the register and MongoDB in one pass, journaled in
privacy/rotation.json: a killed rotation run again with the same key finishes without
re-keying any file twice. Afterwards the configuration appends the new key to
privacy.key_rotations (docs/privacy.md).

Run with: SHOPRECS_PRIVACY_NEW_KEY=... shoprecs rotate-key
"""
from __future__ import annotations

import contextlib
import hashlib
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
from engine.forgotten import registers
from etl.clean import cleaned_days, mark_cleaned
from privacy._rewrite import (
    KEYED_COLLECTIONS,
    NOT_A_KEY,
    event_files,
    landed_days,
    mongo_db,
    parquet_files,
    replace,
)
from privacy.keys import chain_of, check_keys, record_chain, recorded_chain

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
        check_keys(settings)
        if recorded_chain(root) is None:
            record_chain(root, chain_of(settings))
        journal_path = root / ROTATION
        journal = json.loads(journal_path.read_text()) if journal_path.exists() else {
            "to": target, "staged": [], "done": []}
        if journal["to"] != target:
            raise ConfigError("an unfinished rotation to another key is journaled in "
                              f"{journal_path}: finish it with that key first")

        def save():
            replace(journal_path, json.dumps(journal).encode())

        journal_path.parent.mkdir(parents=True, exist_ok=True)
        save()
        new = lambda k: k if k in NOT_A_KEY else rekey(k, new_key)  # noqa: E731

        def once(path: Path, produce: Callable[[], bytes | None]) -> bool:
            """Re-key one file exactly once, whatever kill came before."""
            name = str(path.relative_to(root))
            staged = path.with_name(f".{path.name}.rekey.tmp")
            if name in journal["done"]:
                return False
            if name in journal["staged"]:
                if staged.exists():  # killed between staging and the rename
                    os.replace(staged, path)
            else:
                data = produce()
                if data is None:
                    journal["done"].append(name)
                    save()
                    return False
                staged.write_bytes(data)
                journal["staged"].append(name)
                save()
                os.replace(staged, path)
            with contextlib.suppress(FileNotFoundError):
                path.with_name(f".{path.name}.crc").unlink()
            journal["staged"].remove(name)
            journal["done"].append(name)
            save()
            return True

        def landing(day: Path) -> bytes | None:
            lines = (day / "orders.jsonl").read_text(encoding="utf-8").splitlines()
            out, changed = [], False
            for line in lines:
                with contextlib.suppress(ValueError):
                    order = json.loads(line)
                    if isinstance(order, dict) and order.get("_user_key") not in NOT_A_KEY:
                        order["_user_key"] = new(order["_user_key"])
                        line, changed = json.dumps(order, ensure_ascii=False,
                                                   separators=(",", ":")), True
                out.append(line)
            return "".join(x + "\n" for x in out).encode() if changed else None

        for day in landed_days(root):
            if once(day / "orders.jsonl", lambda day=day: landing(day)):
                counts["landing"] += 1
                manifest = json.loads((day / "_manifest.json").read_text())
                manifest.pop("trains_as", None)  # the keys changed: the next night retrains
                manifest["sha256"] = hashlib.sha256(
                    (day / "orders.jsonl").read_bytes()).hexdigest()
                replace(day / "_manifest.json", json.dumps(manifest, indent=1).encode())
                if day.name[3:] in cleaned_days(root):
                    mark_cleaned(root, day.name[3:], manifest["sha256"])

        def parquet(path: Path) -> bytes | None:
            table = pq.read_table(path, partitioning=None)
            column = "key" if path.relative_to(root).parts[2:4] == ("ids", "users") \
                else "user_key"
            if column not in table.column_names:
                return None
            keys = pa.array([None if k is None else new(k) for k in
                             table[column].to_pylist()], pa.string())
            table = table.set_column(table.column_names.index(column),
                                     table.schema.field(column), keys)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="snappy")
            return sink.getvalue().to_pybytes()

        for path in parquet_files(root):
            counts["parquet"] += once(path, lambda path=path: parquet(path))

        def events(path: Path) -> bytes | None:
            out, changed = [], False
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("shopper"):
                        event["shopper"], changed = new(event["shopper"]), True
                        line = json.dumps(event, separators=(",", ":"))
                out.append(line)
            return "".join(x + "\n" for x in out).encode() if changed else None

        for path in event_files(root):
            with flock(path):
                counts["events"] += once(path, lambda path=path: events(path))
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
