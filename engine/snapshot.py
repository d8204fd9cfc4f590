"""Serving snapshots: publish a trained version to serving/<version>/ and load it back.

    serving/<version>/user_recs, rules, similar, popular, catalog, history
                                                            Parquet, copied from models/
    serving/<version>/user_factors, item_factors            the ALS factors, when trained
    serving/<version>/index/                                the same, as arrays the service
                                                            maps (engine/index.py)
    serving/<version>/manifest.json                         version, row counts, metrics
    serving/CURRENT                                         the version served

Publishing copies into a temporary folder, loads it back to check it, renames it into
place, and only then replaces CURRENT (write + rename: atomic on one filesystem). A
broken or incomplete version never becomes CURRENT; the previous one keeps serving.

Run with: shoprecs publish --version 20240130-abcdef0123
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.files import atomic_write
from engine import index
from engine.index import IndexProblem, ServingIndex
from engine.shoprules import ShopRules, catalog_rules

log = logging.getLogger(__name__)

RESULT_SETS = ("user_recs", "rules", "similar", "popular", "catalog", "history")
OPTIONAL = ("similar", "history")  # versions published before they existed lack them
# the columns read here; the shoppers' and neighbours' sets are read by engine/index.py
COLUMNS = {"rules": ("antecedent", "consequent", "confidence", "lift", "support"),
           "popular": ("goods_id", "score", "rank"), "catalog": ("goods_id", "name")}


class SnapshotError(RuntimeError):
    """A snapshot is missing, incomplete or unreadable; the message names what and where."""


def _read(path: Path, name: str):
    folder = path / name
    if not folder.exists():
        raise SnapshotError(f"snapshot {path} lacks {name}/")
    try:
        table = pq.read_table(folder)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise SnapshotError(f"snapshot {path}: cannot read {name}/: {exc}") from exc
    missing = [c for c in COLUMNS[name] if c not in table.column_names]
    if missing:
        raise SnapshotError(f"snapshot {path}: {name}/ lacks column(s) {', '.join(missing)}")
    return table


@dataclass
class Snapshot:
    """One published version: the shoppers' and goods' arrays (mapped, engine/index.py),
    and the rules, popular goods and catalog as Python objects (they grow with the goods,
    not with the shoppers)."""

    version: str
    manifest: dict
    index: ServingIndex
    rules_by_item: dict[str, list[dict]] = field(default_factory=dict)
    rules: list[dict] = field(default_factory=list)  # every rule, for basket lookups
    popular: list[tuple[str, float]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    # availability and categories as the night's catalog had them (a catalog refresh,
    # engine/shoprules.py, overrides them during the day)
    shop_rules: ShopRules = field(default_factory=ShopRules)

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """Load and index serving/<version>; SnapshotError says what is wrong and where."""
        path = Path(path)
        try:
            return cls._load(path)
        except SnapshotError:
            raise
        except IndexProblem as exc:
            raise SnapshotError(f"snapshot {path}: {exc}") from exc
        except (KeyError, ValueError, TypeError, pa.ArrowException) as exc:
            # columns missing or of the wrong type: a snapshot this code cannot serve
            raise SnapshotError(f"snapshot {path} is malformed: {type(exc).__name__}: "
                                f"{exc}") from exc

    @classmethod
    def _load(cls, path: Path) -> Snapshot:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"snapshot {path}: manifest.json unreadable: {exc}") from exc
        if not isinstance(manifest, dict) or not manifest.get("version"):
            raise SnapshotError(f"snapshot {path}: manifest.json names no version")
        if (path / index.FOLDER).exists():
            served = index.load(path, manifest["version"])
        else:  # published before versions carried their index: built here, in memory
            if not (path / "user_recs").exists():
                raise SnapshotError(f"snapshot {path} lacks user_recs/")
            arrays = index.build(path, manifest.get("metrics", {}).get("blend"))
            served = ServingIndex(arrays, arrays.pop("_weights"))
        snap = cls(version=manifest["version"], manifest=manifest, index=served)
        snap.rules = _read(path, "rules").to_pylist()
        for rule in snap.rules:
            if len(rule["antecedent"]) == 1:  # multi-item antecedents serve baskets
                snap.rules_by_item.setdefault(rule["antecedent"][0], []).append(rule)
        pop = _read(path, "popular").sort_by("rank")
        snap.popular = list(zip(pop["goods_id"].to_pylist(), pop["score"].to_pylist()))
        cat = _read(path, "catalog")
        snap.names = dict(zip(cat["goods_id"].to_pylist(), cat["name"].to_pylist()))
        snap.shop_rules = catalog_rules(cat.to_pylist())  # a bus may send only id and name
        expected = manifest.get("counts", {})
        rows = len(served.arrays["recs_goods"])
        if expected.get("user_recs") not in (None, rows):
            raise SnapshotError(f"snapshot {path}: user_recs has {rows} rows, "
                                f"manifest says {expected['user_recs']}")
        if not snap.popular:
            raise SnapshotError(f"snapshot {path}: no popular items, so no fallback")
        return snap


def current_version(root: str | Path) -> str | None:
    pointer = Path(root) / "serving" / "CURRENT"
    return pointer.read_text().strip() if pointer.exists() else None


def _switch_current(serving: Path, version: str) -> None:
    atomic_write(serving / "CURRENT", version + "\n")


def _stage(src: Path, tmp: Path, version: str) -> None:
    optional = (*OPTIONAL, *index.FACTORS)  # models trained before they existed lack them
    present = [n for n in (*RESULT_SETS, *index.FACTORS)
               if n not in optional or (src / "results" / n).exists()]
    for name in present:
        shutil.copytree(src / "results" / name, tmp / name)
    counts = {name: sum(pq.ParquetFile(f).metadata.num_rows
                        for f in (tmp / name).glob("*.parquet")) for name in present}
    metrics = json.loads((src / "metrics.json").read_text())
    manifest = {"version": version, "published_at": dt.datetime.now(dt.UTC).isoformat(),
                "counts": counts, "metrics": metrics}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    index.save(index.build(tmp, metrics.get("blend")), tmp, version)


def publish(root: str | Path, version: str) -> Path:
    """Copy models/<version>/results to serving/<version>, check it, switch CURRENT."""
    root = Path(root)
    src = root / "models" / version
    if not (src / "_SUCCESS").exists():
        raise SnapshotError(f"model {version} is not completely trained ({src}/_SUCCESS missing)")
    serving = root / "serving"
    dst = serving / version
    if not dst.exists():
        for stale in serving.glob(f".{version}.*.tmp"):  # a publish killed half-way
            shutil.rmtree(stale, ignore_errors=True)
        tmp = serving / f".{version}.{os.getpid()}.tmp"
        try:
            _stage(src, tmp, version)
            Snapshot.load(tmp)  # refuse to publish what the service could not load
            os.replace(tmp, dst)
        except IndexProblem as exc:  # a result set the index cannot be built from
            raise SnapshotError(f"model {version} cannot be published: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if current_version(root) != version:
        _switch_current(serving, version)
        log.info("serving/CURRENT -> %s", version)
    else:
        log.info("version %s is already served; nothing to do", version)
    return dst
