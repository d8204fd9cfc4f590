"""Publishing serving snapshots and answering lookups from them (no Spark, no Flask)."""
from engine.recommender import InvalidPhone, RecommendationEngine, UnknownProduct
from engine.snapshot import Snapshot, SnapshotError, current_version, publish

__all__ = ["InvalidPhone", "RecommendationEngine", "Snapshot", "SnapshotError",
           "UnknownProduct", "current_version", "publish"]
