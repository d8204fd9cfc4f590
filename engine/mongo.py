"""The MongoDB serving store: versioned collections, a pointer document, pruning.

    <kind>_<version>    one collection per result set of a version (kind in RESULT_SETS):
        user_recs_<v>   {_id: user_key, recs: [[goods, score, bought], ...]} best first
        similar_<v>     {_id: goods, items: [[goods, score], ...]} best first
        rules_<v>       {_id, antecedent, consequent, size, confidence, lift, support},
                        index (antecedent, size): a product's rules and a cart's rules
        popular_<v>     {_id: rank, goods_id, score}
        catalog_<v>     {_id: goods, name, available, price, category} (the last three
                        when the night's catalog had them)
        history_<v>     {_id: user_key, goods: [goods, ...]}: everything the shopper bought
    versions            {_id: version, state: "writing" | "complete" | "refused", source,
                        written: {kind: documents} (the result sets already whole),
                        counts, manifest}
    serving             {_id: "current", version, previous, switched_at}: what is served

Writers (`write_partition`, run by Spark executors in pipeline/mongo.py) insert
unordered in batches. The pointer moves with one compare-and-swap update, only after a
version is marked complete, so readers always see one whole version. Nothing here
imports Spark; `connect` is the module-level client factory executors call, chosen by
URI (core/stores.py).

Run with: shoprecs publish --store mongo   (serving: service.store = "mongo")
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import re

from pymongo import ASCENDING, InsertOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from core.stores import connect
from engine.snapshot import RESULT_SETS, SnapshotError

log = logging.getLogger(__name__)

POINTER, VERSIONS, CURRENT = "serving", "versions", "current"
INDEXES = {"rules": [("antecedent", ASCENDING), ("size", ASCENDING)]}
CATALOG_EXTRA = ("available", "price", "category")
_VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_DUPLICATE_KEY = 11000


class MongoStoreError(SnapshotError):
    """A version in MongoDB is missing, incomplete or unreadable; the message says which."""


def collection_name(kind: str, version: str) -> str:
    if kind not in RESULT_SETS:
        raise ValueError(f"unknown result set {kind!r}; one of {RESULT_SETS}")
    if not _VERSION.match(version):
        raise ValueError(f"version {version!r} cannot name a collection: use letters, "
                         "digits, '_', '.', '-' (at most 100)")
    return f"{kind}_{version}"


def _user_doc(row) -> dict:
    return {"_id": row["user_key"],
            "recs": [[r["goods_id"], r["score"], bool(r["bought"])] for r in row["recs"]]}


def _similar_doc(row) -> dict:
    return {"_id": row["goods_id"], "items": [[r["similar_id"], r["score"]] for r in row["items"]]}


def _rule_doc(row) -> dict:
    ante, cons = list(row["antecedent"]), list(row["consequent"])
    # a deterministic _id: a Spark task run twice inserts duplicates, which are ignored
    return {"_id": json.dumps([ante, cons]), "antecedent": ante, "consequent": cons,
            "size": len(ante), "confidence": row["confidence"], "lift": row["lift"],
            "support": row["support"]}


TO_DOC = {"user_recs": _user_doc, "similar": _similar_doc, "rules": _rule_doc,
          "popular": lambda r: {"_id": r["rank"], "goods_id": r["goods_id"], "score": r["score"]},
          "catalog": lambda r: {"_id": r["goods_id"], "name": r["name"],
                                **{c: r[c] for c in CATALOG_EXTRA if c in r}},
          "history": lambda r: {"_id": r["user_key"], "goods": list(r["goods"])}}


def insert_unordered(coll, docs: list[dict]) -> int:
    """Insert `docs` unordered; returns how many were inserted. Documents already there (by
    _id: a retried write) are skipped; any other failure raises MongoStoreError."""
    try:
        return coll.bulk_write([InsertOne(d) for d in docs], ordered=False).inserted_count
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != _DUPLICATE_KEY]
        if other or exc.details.get("writeConcernErrors"):
            first = (other or exc.details["writeConcernErrors"])[0]
            raise MongoStoreError(f"bulk insert into {coll.name} failed: {first.get('errmsg')} "
                                  f"({len(other)} of {len(docs)} documents)") from exc
        return exc.details.get("nInserted", 0)


def write_partition(rows, *, uri: str, db: str, collection: str, kind: str,
                    batch_size: int = 1000, connect=connect) -> int:
    """Insert one partition's rows (Spark Rows or dicts) into `collection` as `kind`
    documents, unordered, `batch_size` at a time, with a client of its own; returns the
    number inserted. Executors run it through DataFrame.foreachPartition."""
    to_doc, rows = TO_DOC[kind], iter(rows)
    client = connect(uri)
    coll = client[db][collection]
    inserted = 0
    try:
        while batch := [to_doc(row) for row in itertools.islice(rows, batch_size)]:
            inserted += insert_unordered(coll, batch)
    finally:
        if not uri.startswith("mongomock://"):
            client.close()
    return inserted


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MongoStore:
    """Versions, the pointer and pruning in one MongoDB database (driver side)."""

    def __init__(self, db):
        self.db = db

    def collection(self, kind: str, version: str):
        return self.db[collection_name(kind, version)]

    def pointer(self) -> dict | None:
        return self.db[POINTER].find_one({"_id": CURRENT})

    def current_version(self) -> str | None:
        doc = self.pointer()
        return doc["version"] if doc else None

    def is_complete(self, version: str) -> bool:
        doc = self.db[VERSIONS].find_one({"_id": version})
        return bool(doc) and doc.get("state") == "complete" and not self.count_mismatches(
            version, doc.get("counts", {}))

    def begin(self, version: str, source: str = "") -> dict[str, int]:
        """Mark `version` being written from `source` (the trained results' fingerprint)
        and return the result sets an interrupted attempt at the same source finished,
        {kind: documents}, each still whole: those are not written again. A result set
        it left partial is kept too: its documents' _ids are deterministic, so writing it
        again inserts only what is missing. Anything else (another source, a refused
        version) is dropped first. Refuses to touch the version being served."""
        if version == self.current_version():
            raise MongoStoreError(f"version {version} is served (serving.current); it cannot "
                                  "be rewritten in place: publish another version first")
        doc = self.db[VERSIONS].find_one({"_id": version}) or {}
        if source and doc.get("state") == "writing" and doc.get("source") == source:
            written = {kind: n for kind, n in (doc.get("written") or {}).items()
                       if self.collection(kind, version).count_documents({}) == n}
            self.db[VERSIONS].update_one({"_id": version}, {"$set": {
                "written": written, "resumed_at": _now()}})
            return written
        for kind in RESULT_SETS:
            self.collection(kind, version).drop()
        self.db[VERSIONS].replace_one({"_id": version}, {
            "_id": version, "state": "writing", "started_at": _now(), "source": source,
            "written": {}}, upsert=True)
        return {}

    def written(self, version: str, kind: str, documents: int) -> None:
        """Record that `kind` of `version` is whole ({documents} of them): a publish
        interrupted after this resumes past it."""
        self.db[VERSIONS].update_one({"_id": version},
                                     {"$set": {f"written.{kind}": documents}})

    def count_mismatches(self, version: str, expected: dict[str, int]) -> list[str]:
        wrong = []
        for kind in RESULT_SETS:
            found = self.collection(kind, version).count_documents({})
            if kind in expected and found != expected[kind]:
                wrong.append(f"{collection_name(kind, version)} has {found} documents, "
                             f"expected {expected[kind]}")
        return wrong

    def finish(self, version: str, expected: dict[str, int], manifest: dict) -> None:
        """Verify every collection's count, build the indexes, mark `version` complete."""
        wrong = self.count_mismatches(version, expected)
        if wrong:
            raise MongoStoreError(f"version {version} is incomplete, not switched: "
                                  + "; ".join(wrong) + ". Publish it again")
        if not expected.get("popular"):
            raise MongoStoreError(f"version {version}: no popular items, so no fallback")
        for kind, keys in INDEXES.items():
            self.collection(kind, version).create_index(keys, name="_".join(k for k, _ in keys))
        self.db[VERSIONS].update_one({"_id": version}, {"$set": {
            "state": "complete", "counts": expected, "published_at": _now(),
            "manifest": {**manifest, "counts": expected}}})

    def refuse(self, version: str) -> None:
        """Mark a written version unservable: never switched to, rewritten when published."""
        self.db[VERSIONS].update_one({"_id": version}, {"$set": {"state": "refused"}})

    def switch(self, version: str) -> str | None:
        """Point serving.current at the complete `version` (compare-and-swap: a concurrent
        switch makes this raise rather than be lost); returns the version served before."""
        if not self.is_complete(version):
            raise MongoStoreError(f"version {version} is not completely written; not switched")
        served = self.current_version()
        if served == version:
            return served
        try:  # updates the pointer still at `served`, else inserts one: a duplicate _id
            self.db[POINTER].update_one({"_id": CURRENT, "version": served}, {"$set": {
                "version": version, "previous": served, "switched_at": _now()}}, upsert=True)
        except DuplicateKeyError:
            raise MongoStoreError(f"serving.current changed while switching to {version}: "
                                  "another publish ran at the same time; publish again") from None
        return served

    def served_metrics(self) -> tuple[str | None, dict | None]:
        """(the served version, the metrics its manifest recorded) — what the quality
        gate compares a new model with when the service reads MongoDB."""
        served = self.current_version()
        if served is None:
            return None, None
        doc = self.db[VERSIONS].find_one({"_id": served}, {"manifest.metrics": 1}) or {}
        return served, (doc.get("manifest") or {}).get("metrics")

    def complete_versions(self) -> list[str]:
        """The complete versions, oldest published first."""
        docs = self.db[VERSIONS].find({"state": "complete"}, {"published_at": 1})
        return [d["_id"] for d in sorted(docs, key=lambda d: (str(d.get("published_at")),
                                                              d["_id"]))]

    def rollback(self, to: str | None = None) -> tuple[str | None, str]:
        """Point serving.current at `to` (default: the version served before the current
        one, the pointer's `previous`); returns (previous, new). Raises MongoStoreError,
        leaving the pointer alone, when there is nothing to go back to or `to` is not a
        complete version."""
        pointer = self.pointer()
        served = pointer["version"] if pointer else None
        if to is None:
            if served is None:
                raise MongoStoreError("nothing is served from MongoDB (no serving.current "
                                      "document); give --to VERSION or publish one")
            to = pointer.get("previous")
            if not to:
                raise MongoStoreError(f"{served} is the first version served from MongoDB; "
                                      "nothing to roll back to")
        if to == served:
            return served, to
        if not self.is_complete(to):
            raise MongoStoreError(
                f"version {to!r} is not a complete version in MongoDB (pruned or never "
                "published there); complete: " + (", ".join(self.complete_versions()) or "none"))
        return self.switch(to), to

    def prune(self, keep: int) -> list[str]:
        """Drop all but the `keep` newest complete versions, never current or previous;
        returns the versions dropped (partial leftovers of failed runs included)."""
        pointer = self.pointer() or {}
        protected = {pointer.get("version"), pointer.get("previous")}
        docs = sorted(self.db[VERSIONS].find({}, {"state": 1, "published_at": 1,
                                                   "started_at": 1}),
                      key=lambda d: str(d.get("published_at") or d.get("started_at") or ""),
                      reverse=True)
        complete = [d["_id"] for d in docs if d.get("state") == "complete"]
        kept = protected | set(complete[:max(keep, 0)])
        dropped = [d["_id"] for d in docs if d["_id"] not in kept]
        for version in dropped:
            for kind in RESULT_SETS:
                self.collection(kind, version).drop()
            self.db[VERSIONS].delete_one({"_id": version})
            log.info("pruned version %s from MongoDB", version)
        return dropped
