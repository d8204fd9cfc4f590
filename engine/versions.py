"""Which versions are published, and switching serving/CURRENT back to an older one.

    shoprecs rollback               -> the version published before the one served
    shoprecs rollback --to VERSION  -> that version

`served_model` says what the service serves (and its metrics), from whichever store it
reads. The target is loaded and checked exactly as the service would load it before CURRENT
moves; a running service notices the switch on its next poll (or on SIGHUP, or
`POST /admin/reload`).

Run with: shoprecs rollback [--to VERSION]
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from core.stores import mongo, serves_from_mongo
from engine.snapshot import Snapshot, SnapshotError, _switch_current, current_version

log = logging.getLogger(__name__)


def served_model(settings) -> tuple[str | None, dict | None]:
    """(the version the service serves, the metrics it was published with): MongoDB's
    pointer document when the service reads MongoDB (service.store = "mongo"), else
    serving/CURRENT. The quality gate and the model report compare with it."""
    if serves_from_mongo(settings):
        from engine.mongo import MongoStore

        return MongoStore(mongo(settings)).served_metrics()
    root = Path(settings.root)
    served = current_version(root)
    if served is None:
        return None, None
    manifest = root / "serving" / served / "manifest.json"
    return served, (json.loads(manifest.read_text()).get("metrics")
                    if manifest.exists() else None)


def published_versions(root: str | Path) -> list[tuple[str, str]]:
    """[(version, published_at)] of every folder under serving/, oldest first.

    Folders without a readable manifest (half-copied, hand-made) are left out."""
    serving = Path(root) / "serving"
    found = []
    for folder in sorted(serving.iterdir()) if serving.exists() else ():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((folder.name, str(manifest.get("published_at") or "")))
    return sorted(found, key=lambda v: (v[1], v[0]))


def rollback(root: str | Path, to: str | None = None) -> tuple[str | None, str]:
    """Switch serving/CURRENT to `to` (default: the version published before the served
    one); returns (previous, new). Raises SnapshotError, leaving CURRENT alone, when there
    is nothing to go back to or the target does not load."""
    root = Path(root)
    served = current_version(root)
    versions = [v for v, _ in published_versions(root)]
    if to is None:
        if served is None:
            raise SnapshotError(f"nothing is served: {root / 'serving' / 'CURRENT'} is "
                                "missing; give --to VERSION or publish one")
        if served not in versions:
            raise SnapshotError(f"serving/CURRENT names {served!r}, which is not published "
                                f"under {root / 'serving'}; give --to VERSION")
        older = versions[:versions.index(served)]
        if not older:
            raise SnapshotError(f"{served} is the oldest published version; nothing to roll "
                                "back to (published: " + ", ".join(versions) + ")")
        to = older[-1]
    elif to not in versions:
        raise SnapshotError(f"version {to!r} is not published under {root / 'serving'}; "
                            "published: " + (", ".join(versions) or "none"))
    Snapshot.load(root / "serving" / to)  # refuse a target the service could not load
    if to != served:
        _switch_current(root / "serving", to)
        log.info("serving/CURRENT %s -> %s (rollback)", served, to)
    return served, to
