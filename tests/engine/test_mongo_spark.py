"""Publishing into MongoDB from Spark executors (foreachPartition), and against a real
server when MONGO_URI is set (skipped otherwise)."""
import os
import uuid

import pytest

from core.stores import connect
from engine import RecommendationEngine, publish
from engine.mongo import MongoStore
from tests.conftest import TEST_KEY, write_model

pytest.importorskip("mongomock", reason="mongomock (dev extra) is not installed")
from engine.mongo_engine import MongoEngine, MongoSnapshot  # noqa: E402
from pipeline.mongo import publish_version, write_results  # noqa: E402
from tests.engine._mongo_helpers import replay, sink_connect  # noqa: E402
from tests.engine.test_mongo import answers  # noqa: E402

pytestmark = pytest.mark.spark
MANY = [(f"k{i // 3:02d}", str(100 + i % 3), 1.0 - i / 100, 1 + i % 3, i % 2 == 0)
        for i in range(30)]  # 10 shoppers x 3 recs, over several partitions


def test_executors_write_every_document_and_the_engine_answers_as_the_snapshot(
        spark, settings, tmp_path):
    s = settings.replace(mongo_uri=f"mongomock://{uuid.uuid4().hex}",
                            mongo_batch_size=4)
    write_model(s.root, "v1", recs=MANY)
    publish(s.root, "v1")
    sink = tmp_path / "sink"
    store = MongoStore(connect(s.mongo.uri)[s.mongo.db])

    def spark_write(spark_, results, version, **kw):
        # the real Spark job; executors write files (mongomock cannot cross processes),
        # which the driver then inserts into its mongomock
        expected = write_results(spark_, results, version, **{**kw, "uri": f"sink://{sink}",
                                                              "factory": sink_connect})
        assert replay(sink, store.db) == sum(expected.values())
        return expected

    publish_version(spark, s, "v1", write=spark_write)
    assert store.current_version() == "v1"
    counts = store.db["versions"].find_one({"_id": "v1"})["counts"]
    assert counts == {"user_recs": 10, "similar": 2, "rules": 4, "popular": 2, "catalog": 4,
                      "history": 1}
    recs = store.collection("user_recs", "v1").find_one({"_id": "k00"})["recs"]
    # one document per shopper, its three rows in rank order
    assert recs == [["100", 1.0, True], ["101", 0.99, False], ["102", 0.98, True]]
    snap = RecommendationEngine.from_warehouse(s.root, hmac_key=TEST_KEY)
    mongo = MongoEngine(MongoSnapshot(store, "v1"), hmac_key=TEST_KEY)
    assert answers(mongo)[:-1] == answers(snap)[:-1]
    assert [tuple(part) for part in mongo._users.get("k03")] == [
        tuple(part) for part in snap._users.get("k03")]


MONGO_URI = os.environ.get("MONGO_URI", "")


@pytest.mark.skipif(not MONGO_URI, reason="MONGO_URI is not set: no MongoDB server to test "
                    "against (the logic is covered on mongomock in test_mongo.py); set "
                    "MONGO_URI=mongodb://host:27017 to run it")
def test_publish_both_stores_against_a_real_server(spark, settings):
    import pipeline

    db = f"shoprecs_test_{uuid.uuid4().hex[:8]}"
    s = settings.replace(mongo_uri=MONGO_URI, mongo_db=db, mongo_batch_size=3)
    client = connect(MONGO_URI)
    try:
        write_model(s.root, "v1", recs=MANY)
        write_model(s.root, "v2", recs=MANY[:9], popular=[("102", 0.9, 1)])
        pipeline.publish(s, "v1", skip_gate=True, store="both", spark=spark)
        pipeline.publish(s, "v2", skip_gate=True, store="both", spark=spark)
        store = MongoStore(client[db])
        assert store.pointer()["version"] == "v2" and store.pointer()["previous"] == "v1"
        snap = RecommendationEngine.from_warehouse(s.root, hmac_key=TEST_KEY)
        mongo = MongoEngine(MongoSnapshot(store, "v2"), hmac_key=TEST_KEY)
        assert answers(mongo)[:-1] == answers(snap)[:-1]
    finally:
        client.drop_database(db)
        client.close()
