"""What the service and the pipeline share about personal data: the register of forgotten
shoppers, and which key chain the warehouse is keyed under.

    privacy/forgotten/<user_key>.json   {"requested_at": ISO time}, one per erasure request
    privacy/keys.json                   {"chain": [fingerprint, ...]} of the key chain
                                        the stored keys were made with

The register holds the HMAC key and the time of each request, nothing else: it is what
stops a later backfill from landing the shopper's old orders again (etl/privacy.py), and
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

from core.errors import ConfigError
from core.phones import key_fingerprint

REGISTER = Path("privacy") / "forgotten"
KEYS = Path("privacy") / "keys.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class FileRegister:
    """The register in the warehouse: one small file per forgotten key."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / REGISTER

    def add(self, key: str, requested_at: str) -> bool:
        """Record a request; False when the key was recorded before (kept as it was)."""
        path = self.dir / f"{key}.json"
        if path.exists():
            return False
        _write_atomic(path, json.dumps({"requested_at": requested_at}))
        return True

    def read(self) -> dict[str, str]:
        """key -> when it was forgotten."""
        found = {}
        with contextlib.suppress(FileNotFoundError):
            for path in self.dir.glob("*.json"):
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


def chain_of(settings) -> list[str]:
    return [key_fingerprint(k) for k in settings.hmac_keys]


def recorded_chain(root: str | Path) -> list[str] | None:
    try:
        return json.loads((Path(root) / KEYS).read_text())["chain"]
    except (OSError, ValueError, KeyError):
        return None


def record_chain(root: str | Path, chain: list[str]) -> None:
    _write_atomic(Path(root) / KEYS, json.dumps({"chain": chain}, indent=1))


def check_keys(settings, adopt: bool = False) -> None:
    """ConfigError when the configured key chain is not the one the warehouse's keys were
    made with (a changed privacy.hmac_key would make every shopper a stranger). `adopt`:
    a warehouse that records no chain yet records this one (the first clean)."""
    mine, theirs = chain_of(settings), recorded_chain(settings.warehouse)
    if theirs is None:
        if adopt:
            record_chain(settings.warehouse, mine)
        return
    if mine == theirs:
        return
    if mine == theirs[:len(mine)]:
        raise ConfigError(
            f"the warehouse {settings.warehouse} was re-keyed by `shoprecs rotate-key` "
            f"({len(theirs) - len(mine)} rotation(s) this configuration lacks): append the "
            "new key to privacy.key_rotations (SHOPRECS_PRIVACY_KEY_ROTATIONS)")
    raise ConfigError(
        f"privacy.hmac_key (and privacy.key_rotations) are not the keys the warehouse "
        f"{settings.warehouse} is keyed with (fingerprints {theirs}, configured {mine}): "
        "every shopper would be a stranger; set SHOPRECS_PRIVACY_HMAC_KEY to the key in use, "
        "or rotate it with `shoprecs rotate-key` (docs/privacy.md)")
