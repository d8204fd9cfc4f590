"""The MongoDB store and engine on mongomock: answers equal the snapshot engine's, the
pointer moves only after complete writes, pruning, the LRU, the reloader."""
import os
import time
import uuid

import pytest

from core.stores import connect
from engine import EngineHolder, RecommendationEngine, publish
from engine.mongo import RESULT_SETS, VERSIONS, MongoStore, MongoStoreError, write_partition
from engine.recommender import Scored
from service import answers as shapes
from tests.conftest import TEST_KEY, write_model

mongomock = pytest.importorskip("mongomock", reason="mongomock (dev extra) is not installed")
from engine.mongo_engine import MongoEngine, MongoSnapshot, MongoSource, engine_for  # noqa: E402
from pipeline.mongo import fingerprint, publish_version  # noqa: E402
from tests.engine._mongo_helpers import python_write  # noqa: E402

PHONES = ["+7(916)539-6205", "89165396205", "+7 (999) 000-0000"]
GOODS = ["100", "101", "102", "ABC1"]
CARTS = [["100"], ["101", "100"], ["102"], ["unknown"], ["100", "101"],
         ["100", "101"] + [f"x{i}" for i in range(40)]]


@pytest.fixture
def mongo_settings(settings):
    return settings.replace(mongo_uri=f"mongomock://{uuid.uuid4().hex}",
                               mongo_batch_size=2, mongo_keep_versions=1)


@pytest.fixture
def store(mongo_settings):
    return MongoStore(connect(mongo_settings.mongo.uri)[mongo_settings.mongo.db])


def mongo_publish(s, version, write=python_write):
    return publish_version(None, s, version, write=write)


def answers(engine):
    """Every kind of lookup, as the API encodes it (names included)."""
    out = []
    for phone in PHONES:
        for exclude in (False, True):
            recs, personal = engine.recommend(phone, 10, exclude)
            out.append((shapes.scored(engine, recs, {}), personal))
    for goods in GOODS:
        out.append(shapes.scored(engine, engine.similar(goods)[0], {}, "score"))
        for sort in ("confidence", "lift"):
            out.append(shapes.rules(engine, engine.associations(goods, 10, 0.4, sort)))
    for cart in CARTS:
        for limit in (1, 10):
            found, source = engine.basket(cart, limit)
            out.append((shapes.suggestions(engine, found, {}), source))
    return out + [engine.find_products("sau"), engine.find_products("101"), engine.info()]


@pytest.mark.parametrize("model", [
    {},  # the default model: rules fire
    {"rules": [(["100"], ["101"], 0.8, 4.0, 0.2)], "similar": [("102", "ABC1", 0.4, 1)]},
])
def test_mongo_engine_answers_as_the_snapshot_engine(mongo_settings, store, model):
    root = mongo_settings.root
    write_model(root, "v1", **model)
    publish(root, "v1")
    mongo_publish(mongo_settings, "v1")
    snap = RecommendationEngine.from_warehouse(root, hmac_key=TEST_KEY)
    mongo = MongoEngine(MongoSnapshot(store, "v1"), hmac_key=TEST_KEY)
    got, want = answers(mongo), answers(snap)
    assert got[:-1] == want[:-1]
    assert got[-1]["metrics"] == want[-1]["metrics"] and got[-1]["version"] == "v1"
    # and they are the right answers, not merely equal ones
    assert mongo.recommend("79165396205")[0][0] == Scored("101", 0.9)
    assert mongo.name("101") == "Saucer"
    assert mongo.recommend("+7 (999) 000-0000") == (
        (Scored("100", 0.5), Scored("ABC1", 0.25)), ("popular",))
    # past the list, both rank the shopper's goods now (here: 100, a neighbour of their 101)
    assert mongo.recommend("79165396205", 3) == snap.recommend("79165396205", 3)
    assert mongo.recommend("79165396205", 3)[1] == (
        ("personalized",) if not model else ("personalized", "popular"))  # 101 has none


def test_mongo_engine_unknown_product_and_bad_phone_raise_like_the_snapshot(mongo_settings,
                                                                            store):
    from engine import InvalidPhone, UnknownProduct

    write_model(mongo_settings.root, "v1")
    mongo_publish(mongo_settings, "v1")
    engine = MongoEngine(MongoSnapshot(store, "v1"), hmac_key=TEST_KEY)
    with pytest.raises(UnknownProduct):
        engine.associations("nope")
    with pytest.raises(UnknownProduct):
        engine.similar("nope")
    with pytest.raises(InvalidPhone):
        engine.recommend("not-a-phone")
    assert engine.basket(["100"])[0][0].goods_id == "101"


def test_repeated_lookups_are_answered_from_the_lru(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    mongo_publish(mongo_settings, "v1")
    engine = MongoEngine(MongoSnapshot(store, "v1"), hmac_key=TEST_KEY)
    first = (engine.recommend("79165396205"), engine.associations("100"),
             engine.similar("100"), engine.basket(["100", "101"]), engine.name("102"))
    assert engine._users.misses == 1 and engine._users.hits == 0
    for kind in ("user_recs", "rules", "similar", "catalog"):
        store.collection(kind, "v1").drop()  # a second answer can only come from the cache
    again = (engine.recommend("79165396205"), engine.associations("100"),
             engine.similar("100"), engine.basket(["100", "101"]), engine.name("102"))
    assert again == first
    assert engine._users.hits == 1 and engine._users.misses == 1
    # an unknown shopper is cached as unknown too: one query, then hits
    engine.recommend("+7 (999) 000-0000")
    engine.recommend("+7 (999) 000-0000")
    assert engine._users.misses == 2 and engine._users.hits == 2


def test_lru_evicts_beyond_its_size(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    mongo_publish(mongo_settings, "v1")
    engine = MongoEngine(MongoSnapshot(store, "v1", cache_size=1), hmac_key=TEST_KEY)
    engine.similar("100")
    engine.similar("101")  # evicts 100
    engine.similar("100")
    assert engine._similar.misses == 3 and engine._similar.hits == 0


def test_pointer_switches_only_after_complete_writes_and_publish_is_idempotent(
        mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    with pytest.raises(MongoStoreError, match="not completely written"):
        store.switch("v1")
    assert mongo_publish(mongo_settings, "v1") is None
    assert store.pointer()["version"] == "v1" and store.pointer()["previous"] is None
    assert store.collection("user_recs", "v1").count_documents({}) == 1
    assert store.collection("rules", "v1").count_documents({}) == 4
    assert "antecedent_size" in store.collection("rules", "v1").index_information()
    calls = []
    mongo_publish(mongo_settings, "v1", write=lambda *a, **k: calls.append(a))
    assert calls == [] and store.pointer()["version"] == "v1"  # complete: nothing rewritten


def test_a_failed_write_leaves_the_old_pointer_and_a_retry_rewrites(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    write_model(mongo_settings.root, "v2", popular=[("102", 0.9, 1)])
    mongo_publish(mongo_settings, "v1")

    def half_write(spark, results, version, **kw):
        expected = python_write(spark, results, version, **kw)
        store.collection("user_recs", version).delete_many({})  # an executor died
        return expected

    with pytest.raises(MongoStoreError, match="user_recs_v2 has 0 documents, expected 1"):
        mongo_publish(mongo_settings, "v2", write=half_write)
    assert store.current_version() == "v1"
    assert store.db[VERSIONS].find_one({"_id": "v2"})["state"] == "writing"

    def crash(spark, results, version, **kw):
        raise RuntimeError("executor lost")

    with pytest.raises(RuntimeError):
        mongo_publish(mongo_settings, "v2", write=crash)
    assert store.current_version() == "v1"
    assert mongo_publish(mongo_settings, "v2") == "v1"  # the retry writes what is missing
    assert store.pointer()["version"] == "v2" and store.pointer()["previous"] == "v1"
    assert store.collection("popular", "v2").count_documents({}) == 1


class Killed(BaseException):
    """The publishing process killed (not an exception the code could handle)."""


def test_a_killed_publish_resumes_past_the_result_sets_it_finished(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    asked: list[str] = []

    def killed_in_the_third(spark, results, version, *, on_written, **kw):
        def written(kind, n):
            if len(asked) == 2:  # killed in the third result set: one document of it in
                coll = store.collection(kind, version)
                coll.delete_many({"_id": {"$ne": coll.find_one()["_id"]}})
                raise Killed
            on_written(kind, n)
            asked.append(kind)
        return python_write(spark, results, version, on_written=written, **kw)

    with pytest.raises(Killed):
        mongo_publish(mongo_settings, "v1", write=killed_in_the_third)
    assert store.current_version() is None
    first = store.collection(RESULT_SETS[0], "v1").count_documents({})

    rewritten: list[str] = []

    def counting(spark, results, version, *, done, on_written, **kw):
        def written(kind, n):
            rewritten.append(kind)
            on_written(kind, n)
        return python_write(spark, results, version, done=done, on_written=written, **kw)

    assert mongo_publish(mongo_settings, "v1", write=counting) is None
    assert rewritten == list(RESULT_SETS[2:])  # the two finished ones were not written again
    assert store.current_version() == "v1"
    assert store.collection(RESULT_SETS[0], "v1").count_documents({}) == first
    doc = store.db[VERSIONS].find_one({"_id": "v1"})
    assert doc["state"] == "complete" and set(doc["written"]) == set(RESULT_SETS)


def test_a_publish_of_changed_results_starts_again(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    results = mongo_settings.root / "models" / "v1" / "results"
    store.begin("v1", fingerprint(results))
    store.written("v1", "popular", 999)  # a stale record: the collection does not hold it
    store.collection("user_recs", "v1").insert_one({"_id": "stale", "recs": []})
    assert store.begin("v1", fingerprint(results)) == {}  # 999 is not what popular holds
    assert store.collection("user_recs", "v1").count_documents({}) == 1  # kept: resumable
    store.written("v1", "user_recs", 1)
    assert store.begin("v1", fingerprint(results)) == {"user_recs": 1}  # resumable
    retrained = next((results / "popular").glob("*.parquet"))
    os.utime(retrained, ns=(time.time_ns(), time.time_ns()))
    assert fingerprint(results) != store.db[VERSIONS].find_one({"_id": "v1"})["source"]
    mongo_publish(mongo_settings, "v1")  # the results changed: written from scratch
    assert store.collection("user_recs", "v1").count_documents({"_id": "stale"}) == 0


def test_a_version_failing_its_self_check_is_refused_and_not_served(mongo_settings, store):
    write_model(mongo_settings.root, "v1")
    write_model(mongo_settings.root, "v2", popular=[])
    mongo_publish(mongo_settings, "v1")
    with pytest.raises(MongoStoreError, match="no popular items"):
        mongo_publish(mongo_settings, "v2")
    assert store.current_version() == "v1"
    with pytest.raises(MongoStoreError, match="is served"):
        store.begin("v1")  # the served version is never rewritten in place


def test_pruning_keeps_the_newest_and_never_current_or_previous(mongo_settings, store):
    s = mongo_settings.replace(mongo_keep_versions=1)
    for v in ("v1", "v2", "v3", "v4"):
        write_model(s.root, v)
    store.begin("v0")  # a partial leftover of a failed run
    for v in ("v1", "v2", "v3"):
        mongo_publish(s, v)
    assert sorted(d["_id"] for d in store.db[VERSIONS].find()) == ["v2", "v3"]
    assert not store.collection("user_recs", "v1").count_documents({})
    store.switch("v2")  # a rollback: current v2, previous v3
    mongo_publish(s, "v4")  # current v4, previous v2: v3 is neither and not newest
    assert sorted(d["_id"] for d in store.db[VERSIONS].find()) == ["v2", "v4"]
    assert store.prune(0) == [] and store.prune(5) == []
    assert sorted(c for c in store.db.list_collection_names() if c.startswith("user_recs")) \
        == ["user_recs_v2", "user_recs_v4"]


def test_write_partition_batches_and_ignores_a_retried_partition(mongo_settings, store):
    rows = [{"goods_id": str(i), "name": f"n{i}"} for i in range(5)]
    sizes = []
    client = connect(mongo_settings.mongo.uri)

    class Counting:
        def __getitem__(self, db):
            return self

        def __getattr__(self, name):
            return getattr(client[mongo_settings.mongo.db], name)

    def factory(uri):
        coll = client[mongo_settings.mongo.db]["catalog_v9"]
        real = coll.bulk_write

        def bulk_write(ops, ordered=True):
            assert ordered is False
            sizes.append(len(ops))
            return real(ops, ordered=ordered)
        coll.bulk_write = bulk_write

        class Db(dict):
            pass
        return {mongo_settings.mongo.db: Db(catalog_v9=coll)}

    kw = dict(uri="mongomock://x", db=mongo_settings.mongo.db, collection="catalog_v9",
              kind="catalog", batch_size=2, connect=factory)
    assert write_partition(iter(rows), **kw) == 5
    assert sizes == [2, 2, 1]
    assert write_partition(iter(rows), **kw) == 0  # a retried task: duplicates ignored
    assert store.db["catalog_v9"].count_documents({}) == 5


def test_write_partition_reports_a_real_write_error(mongo_settings):
    from pymongo.errors import BulkWriteError

    class Failing:
        name = "rules_v1"

        def bulk_write(self, ops, ordered=True):
            raise BulkWriteError({"writeErrors": [{"code": 121, "errmsg": "validation"}],
                                  "nInserted": 0})

    with pytest.raises(MongoStoreError, match="bulk insert into rules_v1 failed: validation"):
        write_partition(iter([{"goods_id": "1", "name": "a"}]), uri="mongomock://y", db="d",
                        collection="rules_v1", kind="catalog",
                        connect=lambda uri: {"d": {"rules_v1": Failing()}})


def test_the_reloader_follows_the_pointer_document(mongo_settings, store):
    for v, pop in (("v1", "100"), ("v2", "102")):
        write_model(mongo_settings.root, v, popular=[(pop, 0.9, 1)])
    holder = EngineHolder(mongo_settings.root,
                          lambda snap: engine_for(snap, hmac_key=TEST_KEY),
                          source=MongoSource(store.db))
    assert holder.reload().status == "empty"
    mongo_publish(mongo_settings, "v1")
    assert holder.reload().status == "reloaded" and isinstance(holder.engine, MongoEngine)
    assert holder.reload().status == "unchanged"
    mongo_publish(mongo_settings, "v2")
    assert holder.reload().version == "v2"
    assert holder.engine.recommend("+7 (999) 000-0000")[0][0].goods_id == "102"
    store.db["serving"].update_one({"_id": "current"}, {"$set": {"version": "v9"}})
    result = holder.reload()  # a pointer to a version that is not there is refused
    assert result.status == "refused" and holder.version == "v2"
    assert "not completely published" in result.detail


def test_settings_from_the_environment(tmp_path):
    from core.config import load
    from engine.stores import source_for

    s = load(env={"SHOPRECS_MONGO_URI": "mongomock://env", "SHOPRECS_PUBLISH_STORE": "both",
                  "SHOPRECS_SERVICE_STORE": "mongo", "SHOPRECS_MONGO_KEEP_VERSIONS": "5"})
    assert (s.mongo.uri, s.publish.store, s.mongo.keep_versions) == ("mongomock://env",
                                                                    "both", 5)
    assert "mongomock" not in repr(s)  # the URI may hold a password
    assert isinstance(source_for(s), MongoSource)
    assert source_for(s.replace(service_store="snapshot")) is None
    with pytest.raises(ValueError, match="service.store = 'redis' .SHOPRECS_SERVICE_STORE.: "
                       "input should be 'snapshot' or 'mongo'"):
        source_for(s.replace(service_store="redis"))
    with pytest.raises(ValueError, match="SHOPRECS_MONGO_URI"):
        connect("")
    with pytest.raises(ValueError, match="must start with mongodb://"):
        connect("http://example")


def test_publish_refuses_an_unknown_store(mongo_settings):
    import pipeline

    with pytest.raises(ValueError, match="publish.store is .redis.: one of snapshot, mongo, both"):
        pipeline.publish(mongo_settings, "v1", store="redis")


def test_the_service_serves_from_mongo_when_configured(mongo_settings):
    from service.app import create_app

    write_model(mongo_settings.root, "v1")  # in the warehouse, not in serving/
    mongo_publish(mongo_settings, "v1")
    s = mongo_settings.replace(service_store="mongo")
    client = create_app({"TESTING": True, "SETTINGS": s}).test_client()
    assert client.get("/ready").status_code == 200
    assert client.get("/models").get_json()["version"] == "v1"
    got = client.get("/users/79165396205/recommendations?limit=1").get_json()
    assert got == [{"goodsId": 101, "rating": 0.9, "name": "Saucer", "price": 2.25}]
    # the shop's blacklist lives in MongoDB too: API hosts may share no warehouse
    admin = s.replace(admin_api_keys="k", service_rules_interval=0)
    client = create_app({"TESTING": True, "SETTINGS": admin}).test_client()
    assert client.put("/admin/blacklist/101", json={"reason": "recalled"},
                      headers={"X-API-Key": "k"}).status_code == 200
    db = connect(s.mongo.uri)[s.mongo.db]
    assert db["blacklist"].find_one({"_id": "101"})["reason"] == "recalled"
    assert not (s.root / "rules" / "blacklist.json").exists()
    other_worker = create_app({"TESTING": True, "SETTINGS": admin}).test_client()
    got = other_worker.get("/users/79165396205/recommendations?limit=1").get_json()
    assert got[0]["goodsId"] != 101
    audit = other_worker.get("/admin/blacklist", headers={"X-API-Key": "k"}).get_json()
    assert [a["action"] for a in audit["audit"]] == ["add"]
    snapshot_only = create_app({"TESTING": True, "SETTINGS": mongo_settings}).test_client()
    assert snapshot_only.get("/ready").status_code == 503  # nothing in serving/CURRENT


def _evaluated(root, version, als_map):
    import json

    out = root / "models" / version / "metrics.json"
    models = {"als": {"all": {"map": als_map}}, "popularity": {"all": {"map": 0.01}}}
    out.write_text(json.dumps({"version": version, "window": ["2024-01-01", "2024-01-30"],
                               "evaluation": {"k": 10, "models": models}}))


def test_rollback_moves_the_pointer_back_and_refuses_what_is_not_complete(mongo_settings,
                                                                          store):
    for version in ("v1", "v2"):
        write_model(mongo_settings.root, version)
        mongo_publish(mongo_settings, version)
    assert store.rollback() == ("v2", "v1") and store.current_version() == "v1"
    assert store.rollback() == ("v1", "v2")  # previous is now v1's successor: back again
    assert store.rollback("v2") == ("v2", "v2")  # already served: nothing moves
    with pytest.raises(MongoStoreError, match="'v9' is not a complete version.*v1, v2"):
        store.rollback("v9")
    assert store.current_version() == "v2"
    empty = MongoStore(connect(f"mongomock://{uuid.uuid4().hex}")["shoprecs"])
    with pytest.raises(MongoStoreError, match="nothing is served from MongoDB"):
        empty.rollback()


def test_the_cli_rolls_back_mongodb_and_the_folder_to_the_same_version(mongo_settings,
                                                                       store, monkeypatch):
    from click.testing import CliRunner

    from engine import current_version
    from shoprecs import cli

    root = mongo_settings.root
    for version in ("v1", "v2"):
        write_model(root, version)
        mongo_publish(mongo_settings, version)
        publish(root, version)
    for key, value in {"WAREHOUSE_ROOT": str(root), "MONGO_URI": mongo_settings.mongo.uri,
                       "PUBLISH_STORE": "both", "PRIVACY_HMAC_KEY": TEST_KEY}.items():
        monkeypatch.setenv(f"SHOPRECS_{key}", value)
    result = CliRunner().invoke(cli.main, ["rollback"])
    assert result.exit_code == 0, result.output
    assert "MongoDB serving.current: v2 -> v1" in result.output
    assert "serving/CURRENT: v2 -> v1" in result.output
    assert store.current_version() == "v1" and current_version(root) == "v1"
    result = CliRunner().invoke(cli.main, ["rollback", "--store", "mongo", "--to", "v7"])
    assert result.exit_code == 9 and "'v7' is not a complete version" in result.output
    assert store.current_version() == "v1"


def test_the_gate_compares_with_what_mongodb_serves_when_the_service_reads_it(
        mongo_settings, store):
    import pipeline
    from engine.versions import served_model
    from models.gate import QualityGateError

    root = mongo_settings.root
    write_model(root, "v1")
    _evaluated(root, "v1", 0.05)
    mongo_publish(mongo_settings, "v1")  # MongoDB serves v1; serving/ has nothing
    write_model(root, "v2")
    _evaluated(root, "v2", 0.03)  # beats popularity, but 40% below v1
    reads_mongo = mongo_settings.replace(service_store="mongo",
                                      publish_store="mongo")
    assert served_model(reads_mongo)[0] == "v1"
    with pytest.raises(QualityGateError, match="below the served model v1"):
        pipeline.gate(reads_mongo, "v2")
    assert pipeline.gate(reads_mongo.replace(gate_max_drop=0.5), "v2") == "v2"
    # the folder-reading service has nothing served: only popularity is the bar
    assert pipeline.gate(mongo_settings, "v2") == "v2"


def test_events_go_to_mongodb_too_when_the_service_serves_from_it(mongo_settings, store):
    import time

    from engine.events import EventLog, FileSink, MongoSink
    from engine.stores import event_sinks

    s = mongo_settings.replace(service_store="mongo")
    sinks = event_sinks(s)
    assert [type(sink) for sink in sinks] == [FileSink, MongoSink]
    log = EventLog(sinks, interval=0.01)
    for n in (1, 2, 2):  # event 2 twice (a retried write): one document
        log.record("feedback", {"id": f"e{n}", "time": time.time(), "type": "click"})
    log.flush()
    log.record("feedback", {"id": "e2", "time": time.time(), "type": "click"})
    log.stop()
    docs = list(connect(s.mongo.uri)[s.mongo.db]["feedback"].find({}, {"_id": 1, "type": 1}))
    assert sorted(d["_id"] for d in docs) == ["e1", "e2"]
    assert log.written["feedback"] == 4 and not log.dropped  # duplicates are not failures
    assert [type(sink) for sink in event_sinks(mongo_settings)] == [FileSink]
