"""Publishing serving snapshots and answering lookups from them (no Spark, no Flask)."""
from engine.recommender import InvalidPhone, RecommendationEngine, UnknownProduct
from engine.reloader import EngineHolder, ReloadResult
from engine.snapshot import Snapshot, SnapshotError, current_version, publish
from engine.versions import published_versions, rollback

__all__ = ["EngineHolder", "InvalidPhone", "RecommendationEngine", "ReloadResult", "Snapshot",
           "SnapshotError", "UnknownProduct", "current_version", "publish",
           "published_versions", "rollback"]
