"""Publish a trained version into MongoDB, written in bulk by the Spark executors.

models/<version>/results/* are read with Spark, shaped into one document per shopper
(user_recs, history), per product (similar), per rule, per popular rank and per catalog
entry, and each partition is inserted by its executor with a client of its own
(`engine.mongo.write_partition`): nothing but counts reaches the driver. Then the driver
checks every collection's count, builds the indexes, self-checks the version as the
service would serve it, switches serving.current and prunes old versions
(engine/mongo.py has the layout). A failure anywhere before the switch leaves the
served version as it was. Publishing the same version again resumes: the result sets
an interrupted attempt finished are kept (the versions document records each as it
completes), the one it was writing is completed (documents already there are skipped by
their _id), the rest written; a version whose trained results changed since, or one
refused, is rewritten from scratch.

Run with: shoprecs publish --store mongo [--version V]
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core.phones import PhoneRules
from core.stores import connect
from engine.mongo import MongoStore, MongoStoreError, collection_name, write_partition
from engine.mongo_engine import MongoEngine, MongoSnapshot

log = logging.getLogger(__name__)


def documents(spark: SparkSession, results: Path) -> dict[str, DataFrame]:
    """result set -> a DataFrame with one row per document engine.mongo.TO_DOC makes."""
    recs = spark.read.parquet(str(results / "user_recs")).where(F.col("user_key").isNotNull())
    bought = F.col("bought") if "bought" in recs.columns else F.lit(False)
    out = {"user_recs": recs.groupBy("user_key").agg(F.sort_array(F.collect_list(F.struct(
        "rank", "goods_id", "score", bought.alias("bought")))).alias("recs"))}
    if (results / "similar").exists():  # versions trained before it existed lack it
        sim = spark.read.parquet(str(results / "similar"))
        out["similar"] = sim.groupBy("goods_id").agg(F.sort_array(F.collect_list(F.struct(
            "rank", "similar_id", "score"))).alias("items"))
    if (results / "history").exists():  # versions trained before it existed lack it
        out["history"] = spark.read.parquet(str(results / "history")).where(
            F.col("user_key").isNotNull())
    out["rules"] = spark.read.parquet(str(results / "rules"))
    out["popular"] = spark.read.parquet(str(results / "popular"))
    out["catalog"] = (spark.read.parquet(str(results / "catalog"))
                      .where(F.col("goods_id").isNotNull()).dropDuplicates(["goods_id"]))
    return out


def write_results(spark: SparkSession, results: Path, version: str, *, uri: str, db: str,
                  batch_size: int, factory=connect, done: dict[str, int] | None = None,
                  on_written=None) -> dict[str, int]:
    """Insert every result set of `version` from the executors but those `done` has
    (already whole: {kind: documents}); returns the number of documents each collection
    must hold. `factory` (module-level, so picklable) makes each partition's client from
    `uri`; `on_written(kind, documents)` is called as each result set is whole."""
    expected = dict(done or {})
    for kind, df in documents(spark, results).items():
        if kind in expected:
            log.info("%s already holds its %d documents: not written again",
                     collection_name(kind, version), expected[kind])
            continue
        df = df.persist()  # counted, then written: shaped once
        try:
            expected[kind] = df.count()
            log.info("writing %d %s documents to %s", expected[kind], kind,
                     collection_name(kind, version))
            df.foreachPartition(functools.partial(
                write_partition, uri=uri, db=db, collection=collection_name(kind, version),
                kind=kind, batch_size=batch_size, connect=factory))
        finally:
            df.unpersist()
        if on_written is not None:
            on_written(kind, expected[kind])
    return expected


def fingerprint(results: Path) -> str:
    """What identifies the trained results a publish reads: every file's path, size and
    modification time (a retrain or an erasure rewriting them changes it)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(results)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def publish_version(spark: SparkSession, settings, version: str, *, factory=connect,
                    write=write_results) -> str:
    """Write `version` into MongoDB (unless already complete there), verify it, switch
    serving.current to it and prune; returns the version served before."""
    src = settings.root / "models" / version
    if not (src / "_SUCCESS").exists():
        raise MongoStoreError(f"model {version} is not completely trained "
                              f"({src}/_SUCCESS missing)")
    store = MongoStore(factory(settings.mongo.uri)[settings.mongo.db])
    if not store.is_complete(version):
        done = store.begin(version, fingerprint(src / "results"))
        if done:
            log.info("resuming the interrupted publish of %s into MongoDB: %s already "
                     "written", version, ", ".join(sorted(done)))
        expected = write(spark, src / "results", version, uri=settings.mongo.uri,
                         db=settings.mongo.db, batch_size=settings.mongo.batch_size,
                         factory=factory, done=done,
                         on_written=functools.partial(store.written, version))
        manifest = {"version": version, "published_at": dt.datetime.now(dt.UTC).isoformat(),
                    "metrics": json.loads((src / "metrics.json").read_text())}
        store.finish(version, expected, manifest)
        rules = PhoneRules.from_settings(settings.phone)
        try:  # refuse to switch to what the service could not serve
            MongoEngine(MongoSnapshot(store, version, cache_size=1000),
                        hmac_key=settings.privacy.keys, rules=rules).self_check()
        except Exception:
            store.refuse(version)  # so that publishing it again rewrites it
            raise
    previous = store.switch(version)
    log.info("MongoDB serving.current -> %s (was %s)", version, previous)
    dropped = store.prune(settings.mongo.keep_versions)
    if dropped:
        log.info("pruned %d old version(s) from MongoDB: %s", len(dropped), ", ".join(dropped))
    return previous
