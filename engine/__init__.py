"""Publishing serving snapshots and answering lookups from them (no Spark, no Flask)."""
from engine.recommender import Filter, InvalidPhone, RecommendationEngine, Scored, UnknownProduct
from engine.reloader import EngineHolder, ReloadResult
from engine.shoprules import RulesHolder, ShopRules
from engine.snapshot import Snapshot, SnapshotError, current_version, publish
from engine.versions import published_versions, rollback

__all__ = ["EngineHolder", "Filter", "InvalidPhone", "RecommendationEngine", "ReloadResult",
           "RulesHolder", "Scored", "ShopRules", "Snapshot", "SnapshotError", "UnknownProduct",
           "current_version", "publish", "published_versions", "rollback"]
