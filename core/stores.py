"""Where versions are published and served from: the one rule for each store question.

    publish.store   "snapshot" (serving/ in the warehouse), "mongo" or "both"
    service.store   "snapshot" or "mongo"

`connect` is the MongoDB client factory every part uses (pymongo, or mongomock for tests);
`mongo(settings)` the configured database, with one clear error when no URI is set. Which
parts live in MongoDB follows from two questions: does the service read MongoDB
(`serves_from_mongo`: its engine, blacklist, events and register of forgotten shoppers go
there, for API hosts that share no warehouse), and is MongoDB a store at all
(`mongo_is_a_store`: the run lock's lease and every erasure reach it then).
"""
from __future__ import annotations

import threading

from core.errors import ConfigError, Unreachable

PUBLISH_STORES = ("snapshot", "mongo", "both")
_mock_clients: dict[str, object] = {}
_mock_lock = threading.Lock()
_reached: set[str] = set()  # URIs whose server answered a ping in this process


def publish_stores(settings, store: str | None = None) -> tuple[str, ...]:
    """The stores `shoprecs publish` writes: `store` (a --store choice) or publish.store,
    as ("snapshot",), ("mongo",) or both, MongoDB first (its failure leaves both as they
    were)."""
    store = store or settings.publish.store
    if store not in PUBLISH_STORES:
        raise ConfigError(f"publish.store is {store!r}: one of {', '.join(PUBLISH_STORES)}")
    return {"snapshot": ("snapshot",), "mongo": ("mongo",), "both": ("mongo", "snapshot")}[store]


def serves_from_mongo(settings) -> bool:
    """Whether the service reads its versions (and keeps its shop rules) in MongoDB."""
    return settings.service.store == "mongo"


def mongo_is_a_store(settings) -> bool:
    """Whether MongoDB holds anything of this shop's: served from, or published to."""
    return bool(settings.mongo.uri) and (serves_from_mongo(settings)
                                         or "mongo" in publish_stores(settings))


def connect(uri: str):
    """A client for `uri`: pymongo for mongodb:// and mongodb+srv://, mongomock (a dev
    dependency) for mongomock://NAME, shared per process so a test's writers and readers
    meet. Module-level so Spark ships it to executors by reference."""
    if not uri:
        raise ConfigError("no MongoDB URI: set mongo.uri (SHOPRECS_MONGO_URI), e.g. "
                          "mongodb://127.0.0.1:27017")
    if uri.startswith("mongomock://"):
        import mongomock

        with _mock_lock:
            return _mock_clients.setdefault(uri, mongomock.MongoClient())
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("mongo.uri must start with mongodb://, mongodb+srv:// or "
                          "mongomock://, got a URI with another scheme")
    from pymongo import MongoClient

    return MongoClient(uri, appname="shoprecs", serverSelectionTimeoutMS=10_000,
                       tz_aware=True)


def mongo(settings):
    """The configured MongoDB database (mongo.uri, mongo.db). The first time a process asks
    for a server it pings it: Unreachable (exit code 8) within the client's 10 s server
    selection timeout, rather than a driver traceback from the first query."""
    uri = settings.mongo.uri
    client = connect(uri)
    if uri not in _reached and not uri.startswith("mongomock://"):
        from pymongo.errors import PyMongoError
        from pymongo.uri_parser import parse_uri

        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            hosts = ", ".join(f"{h}:{p}" for h, p in parse_uri(uri)["nodelist"]) or uri
            raise Unreachable(f"MongoDB at {hosts} does not answer ({type(exc).__name__}): "
                              "check mongo.uri (SHOPRECS_MONGO_URI) and that the server is "
                              "up") from exc
        _reached.add(uri)
    return client[settings.mongo.db]
