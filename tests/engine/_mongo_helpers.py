"""Test support for the MongoDB store: a Spark-free writer and a file sink for executors.

`python_write` has the signature of pipeline.mongo.write_results and shapes the
results as its Spark job does, in plain Python, writing through the real partition
function. `sink_connect` is a client factory Spark executors can import: each
partition's documents land in JSON-lines files (mongomock lives in one process only),
which `replay` then inserts into the test's mongomock database.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from core.stores import connect
from engine.mongo import RESULT_SETS, collection_name, write_partition


def rows_of(results: Path, kind: str) -> list[dict]:
    rows = pq.read_table(results / kind).to_pylist()
    if kind not in ("user_recs", "similar"):
        return rows
    key, field = ("user_key", "recs") if kind == "user_recs" else ("goods_id", "items")
    grouped = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r[key], r["rank"])):
        grouped[row[key]].append(row)
    return [{key: k, field: v} for k, v in grouped.items()]


def python_write(spark, results: Path, version: str, *, uri: str, db: str, batch_size: int,
                 factory=connect, done=None, on_written=None) -> dict[str, int]:
    """write_results without Spark: two 'partitions' per result set."""
    expected = dict(done or {})
    for kind in RESULT_SETS:
        if kind in expected:
            continue
        rows = rows_of(results, kind)
        expected[kind] = len(rows)
        half = len(rows) // 2
        for part in (rows[:half], rows[half:]):
            write_partition(iter(part), uri=uri, db=db, collection=collection_name(kind, version),
                            kind=kind, batch_size=batch_size, connect=factory)
        if on_written is not None:
            on_written(kind, expected[kind])
    return expected


class _SinkCollection:
    def __init__(self, folder: Path):
        self.folder, self.name = folder, folder.name

    def bulk_write(self, ops, ordered=True):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        path.write_text("".join(json.dumps(op._doc) + "\n" for op in ops))

        class Result:
            inserted_count = len(ops)
        return Result()


class _SinkClient:
    def __init__(self, root: Path):
        self.root = root

    def __getitem__(self, db):
        root = self.root / db

        class Db:
            def __getitem__(self, coll):
                return _SinkCollection(root / coll)
        return Db()

    def close(self):
        pass


def sink_connect(uri: str) -> _SinkClient:
    """uri: sink:///absolute/folder"""
    return _SinkClient(Path(uri.removeprefix("sink://")))


def replay(sink_root: Path, db) -> int:
    """Insert every sunk document into the mongomock database `db`."""
    n = 0
    for folder in (sink_root / db.name).iterdir():
        for path in folder.glob("*.jsonl"):
            docs = [json.loads(line) for line in path.read_text().splitlines()]
            db[folder.name].insert_many(docs)
            n += len(docs)
    return n
