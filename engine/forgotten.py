"""The register of forgotten shoppers, which the service reads on the request path.

    privacy/forgotten/<user_key>.json   {"requested_at": ISO time}, one per erasure request

The register holds the HMAC key and the time of each request, nothing else: it is what
stops a later backfill from landing the shopper's old orders again (privacy/erasure.py), and
what makes the service answer the shopper as unknown from the moment of the request, on
every version published before it (engine/shoprules.py, Filter.forgets). When the service
serves from MongoDB the register is kept in its `forgotten` collection as well, for API
hosts that share no warehouse.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from core.files import atomic_write
from core.stores import mongo, mongo_is_a_store

REGISTER = Path("privacy") / "forgotten"


class FileRegister:
    """The register in the warehouse: one small file per forgotten key."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / REGISTER

    def add(self, key: str, requested_at: str) -> bool:
        """Record a request; False when the key was recorded before (kept as it was)."""
        path = self.dir / f"{key}.json"
        if path.exists():
            return False
        atomic_write(path, json.dumps({"requested_at": requested_at}))
        return True

    def read(self) -> dict[str, str]:
        """key -> when it was forgotten."""
        found = {}
        for path in self.dir.glob("*.json"):  # none when the folder is missing
            with contextlib.suppress(OSError, ValueError):
                found[path.stem] = json.loads(path.read_text())["requested_at"]
        return found

    def signature(self):
        try:
            stat = self.dir.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_nlink

    def rename(self, old: str, new: str) -> None:
        """A key rotation: the request follows the shopper's new key."""
        path = self.dir / f"{old}.json"
        if path.exists():
            os.replace(path, self.dir / f"{new}.json")


class MongoRegister:
    """The register in MongoDB (`forgotten`: {_id: key, requested_at})."""

    def __init__(self, db):
        self.coll = db["forgotten"]

    def add(self, key: str, requested_at: str) -> bool:
        done = self.coll.update_one({"_id": key}, {"$setOnInsert": {
            "requested_at": requested_at}}, upsert=True)
        return done.upserted_id is not None

    def read(self) -> dict[str, str]:
        return {d["_id"]: d["requested_at"] for d in self.coll.find()}

    def signature(self):
        return self.coll.count_documents({})

    def rename(self, old: str, new: str) -> None:
        doc = self.coll.find_one({"_id": old})
        if doc is not None:
            self.coll.update_one({"_id": new}, {"$setOnInsert": {
                "requested_at": doc["requested_at"]}}, upsert=True)
            self.coll.delete_one({"_id": old})


def registers(settings) -> list:
    """Every register a request is written to: the warehouse's, and MongoDB's when MongoDB
    is a store."""
    found = [FileRegister(settings.root)]
    if mongo_is_a_store(settings):
        found.append(MongoRegister(mongo(settings)))
    return found
