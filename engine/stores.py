"""What the service reads and writes, in the store core.stores says it serves from.

MongoDB when the service serves from it (`service.store = "mongo"`: API hosts may share no
warehouse), else the warehouse: the versions (`source_for`), the shop's blacklist, the
register of forgotten shoppers, and where impressions and feedback go (the warehouse's
events/ always, since the attribution job reads it; MongoDB's too when it serves).
"""
from __future__ import annotations

from core.stores import mongo, serves_from_mongo


def source_for(settings):
    """Where the service reads versions: None for the snapshot folder, a MongoSource."""
    from engine.mongo_engine import MongoSource

    return MongoSource(mongo(settings), settings.mongo.cache_size) \
        if serves_from_mongo(settings) else None


def blacklist_for(settings):
    from engine.shoprules import FileBlacklist, MongoBlacklist

    return MongoBlacklist(mongo(settings)) if serves_from_mongo(settings) \
        else FileBlacklist(settings.root)


def register_for(settings):
    """The register of forgotten shoppers the service reads (engine/forgotten.py)."""
    from engine.forgotten import FileRegister, MongoRegister

    return MongoRegister(mongo(settings)) if serves_from_mongo(settings) \
        else FileRegister(settings.root)


def event_sinks(settings) -> list:
    from engine.events import FileSink, MongoSink

    sinks = [FileSink(settings.root)]
    if serves_from_mongo(settings):
        sinks.append(MongoSink(mongo(settings)))
    return sinks
