"""Shop rules, applied at request time: what must never be shown, and what a request keeps.

    serving/catalog/<stamp>.parquet   a catalog refresh (`shoprecs catalog`, hourly DAG):
                                      goods_id, name, available, price, category
    serving/catalog/CURRENT           names the refresh in force; switched atomically
    rules/blacklist.json              goods the shop forbids, each with why, when and who
    rules/audit.jsonl                 every blacklist change: when, which key, what
                                      (in MongoDB instead when the service serves from it:
                                      MongoBlacklist)

Goods out of stock (`available: false` in the latest catalog: the refresh if there is one,
else the served snapshot's) and blacklisted goods never appear in an answer; a request may
also keep only some categories and drop given ids (`Filter`). Every worker process holds a
`RulesHolder` that looks at the two pointers at most every `interval` seconds, on the
request path (a stat of two small files; no thread, so forked workers need nothing), and
swaps in a new `ShopRules` whole, so a change reaches every worker within seconds without
a retrain. A file that cannot be read is logged and the rules in force stay.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pymongo.errors import PyMongoError

from core.files import atomic_write, flock

log = logging.getLogger(__name__)

CATALOG_DIR = Path("serving") / "catalog"
BLACKLIST = Path("rules") / "blacklist.json"
AUDIT = Path("rules") / "audit.jsonl"
KEEP_CATALOGS = 5  # refreshes kept beside the current one, for a look back
CATALOG_SCHEMA = pa.schema([("goods_id", pa.string()), ("name", pa.string()),
                            ("available", pa.bool_()), ("price", pa.float64()),
                            ("category", pa.string())])
MAX_REASON = 500


class RulesError(ValueError):
    """A catalog or blacklist that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class ShopRules:
    """The rules in force: goods hidden from every answer, and each goods' category."""

    unavailable: frozenset[str] = frozenset()
    blacklist: Mapping[str, dict] = field(default_factory=dict)
    category: Mapping[str, str] = field(default_factory=dict)
    price: Mapping[str, float] = field(default_factory=dict)
    catalog: str | None = None  # the catalog refresh in force (None: the snapshot's)
    # shoppers forgotten on request (engine/forgotten.py): user_key -> when
    forgotten: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Filter:
    """What one answer may hold: not `hidden` (shop rules), not `exclude` (the request's),
    and, when `categories` is given, only goods of those categories; and the catalog in
    force it is answered against (`category_of`, `price_of`)."""

    hidden: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    categories: frozenset[str] | None = None
    category_of: Mapping[str, str] = field(default_factory=dict)
    price_of: Mapping[str, float] = field(default_factory=dict)
    forgotten: Mapping[str, str] = field(default_factory=dict)

    def forgets(self, user_key: str, published_at: str) -> bool:
        """The shopper asked to be forgotten after this version was published: answer them
        as unknown (a version published later was trained without their past)."""
        when = self.forgotten.get(user_key)
        return when is not None and when >= published_at

    @property
    def active(self) -> bool:
        return bool(self.hidden or self.exclude or self.categories is not None)

    def allows(self, goods_id: str) -> bool:
        return (goods_id not in self.hidden and goods_id not in self.exclude
                and (self.categories is None or self.category_of.get(goods_id)
                     in self.categories))

    def keep(self, items: Iterable, limit: int, key=lambda item: item[0]) -> list:
        """The first `limit` of `items` this filter allows."""
        return list(itertools.islice((i for i in items if self.allows(key(i))), limit))


NO_FILTER = Filter()


def request_filter(rules: ShopRules, snapshot_rules: ShopRules) -> Filter:
    """The shop rules' Filter: the refreshed catalog's if there is one, else the snapshot's,
    and the blacklist (a request adds its own `exclude` and `categories`)."""
    base = rules if rules.catalog is not None else snapshot_rules
    return Filter(hidden=base.unavailable | frozenset(rules.blacklist),
                  category_of=base.category, price_of=base.price, forgotten=rules.forgotten)


def catalog_rules(rows: Iterable[Mapping], version: str | None = None) -> ShopRules:
    """ShopRules from catalog rows: goods_id, and available (null: available), category and
    price (null: unknown) when the catalog has them."""
    rows = list(rows)
    return ShopRules(
        unavailable=frozenset(r["goods_id"] for r in rows if r.get("available") is False),
        category={r["goods_id"]: r["category"] for r in rows if r.get("category")},
        price={r["goods_id"]: r["price"] for r in rows if r.get("price") is not None},
        catalog=version)


# ---------------------------------------------------------------- catalog refreshes


def publish_catalog(root: str | Path, goods: list[dict]) -> str:
    """Write a catalog refresh from the bus's /goods records and make it current; return
    its name. RulesError (and nothing switched) for a catalog without any goods id."""
    rows = []
    for g in goods:
        goods_id = "" if g.get("id") is None else str(g["id"]).strip()
        if not goods_id:
            continue
        price, category = g.get("price"), g.get("category")
        rows.append({"goods_id": goods_id,
                     "name": None if g.get("name") is None else str(g["name"]),
                     "available": g.get("available") is not False,
                     "price": float(price) if isinstance(price, int | float) else None,
                     "category": str(category).strip() or None if category else None})
    if not rows:
        raise RulesError(f"the catalog pulled has no goods with an id ({len(goods)} records); "
                         "the catalog in force stays")
    folder = Path(root) / CATALOG_DIR
    name = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), sink)
    atomic_write(folder / f"{name}.parquet", sink.getvalue().to_pybytes())
    atomic_write(folder / "CURRENT", name + "\n")
    for old in sorted(folder.glob("*.parquet"))[:-(KEEP_CATALOGS + 1)]:
        old.unlink(missing_ok=True)
    log.info("catalog %s published: %d goods, %d unavailable", name, len(rows),
             sum(not r["available"] for r in rows))
    return name


def current_catalog(root: str | Path) -> str | None:
    pointer = Path(root) / CATALOG_DIR / "CURRENT"
    return pointer.read_text().strip() or None if pointer.exists() else None


def _load_catalog(root: Path, name: str) -> ShopRules:
    path = root / CATALOG_DIR / f"{name}.parquet"
    try:
        table = pq.read_table(path, columns=["goods_id", "available", "category", "price"])
    except Exception as exc:  # pyarrow raises several types for missing or corrupt files
        raise RulesError(f"catalog {path} unreadable: {exc}") from exc
    return catalog_rules(table.to_pylist(), name)


# ---------------------------------------------------------------- the blacklist


def key_id(api_key: str) -> str:
    """Who changed the blacklist, for the audit: a digest of the API key, never the key."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def read_blacklist(root: str | Path) -> dict[str, dict]:
    """goods id -> {"reason", "added_at", "by"}; {} when none was written."""
    path = Path(root) / BLACKLIST
    if not path.exists():
        return {}
    try:
        goods = json.loads(path.read_text())["goods"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RulesError(f"blacklist {path} unreadable: {exc}; fix or remove it") from exc
    if not isinstance(goods, dict):
        raise RulesError(f"blacklist {path}: 'goods' is not an object")
    return goods


def _change(action: str, goods_id: str, by: str, reason: str) -> tuple[dict, dict]:
    """(the entry an "add" makes, the change's audit record, to which the caller adds
    whether the goods was `found`); ValueError for an action but "add" or "remove"."""
    if action not in ("add", "remove"):
        raise ValueError(f"action must be 'add' or 'remove', not {action!r}")
    now, reason = dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), reason[:MAX_REASON]
    return ({"reason": reason, "added_at": now, "by": by},
            {"at": now, "by": by, "action": action, "goods_id": goods_id, "reason": reason})


def change_blacklist(root: str | Path, action: str, goods_id: str, by: str,
                     reason: str = "") -> dict | None:
    """Add (action "add", with a reason) or remove ("remove") a goods; audited. Returns the
    entry added, or the one removed (None if there was none)."""
    root = Path(root)
    with flock(root / "rules" / ".lock"):  # writers of every worker and host, in turn
        added, audit = _change(action, goods_id, by, reason)
        goods = read_blacklist(root)
        if action == "add":
            entry = goods[goods_id] = added
        else:
            entry = goods.pop(goods_id, None)
        atomic_write(root / BLACKLIST, json.dumps({"goods": goods}, indent=1,
                                                   ensure_ascii=False))
        with open(root / AUDIT, "a") as out:
            out.write(json.dumps({**audit, "found": entry is not None}, ensure_ascii=False)
                      + "\n")
    log.info("blacklist %s %s by %s", action, goods_id, by)
    return entry


def read_audit(root: str | Path, limit: int = 100) -> list[dict]:
    """The last `limit` blacklist changes, newest first."""
    path = Path(root) / AUDIT
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[-limit:]
    return [json.loads(line) for line in reversed(lines) if line.strip()]


class FileBlacklist:
    """The blacklist in the warehouse: rules/blacklist.json and rules/audit.jsonl."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def signature(self):
        try:
            st = (self.root / BLACKLIST).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def read(self) -> dict[str, dict]:
        return read_blacklist(self.root)

    def change(self, action: str, goods_id: str, by: str, reason: str = "") -> dict | None:
        return change_blacklist(self.root, action, goods_id, by, reason)

    def audit(self, limit: int = 100) -> list[dict]:
        return read_audit(self.root, limit)


class MongoBlacklist:
    """The blacklist in MongoDB, for API hosts that serve from it (service.store = "mongo"):
    one document per goods in `blacklist`, every change in `blacklist_audit`, and a change
    counter in `blacklist_meta` that the workers' holders poll (one small read each)."""

    ENTRIES, AUDIT, META = "blacklist", "blacklist_audit", "blacklist_meta"

    def __init__(self, db):
        self.db = db

    def signature(self):
        doc = self.db[self.META].find_one({"_id": self.ENTRIES})
        return doc["changes"] if doc else None

    def read(self) -> dict[str, dict]:
        return {d.pop("_id"): d for d in self.db[self.ENTRIES].find()}

    def change(self, action: str, goods_id: str, by: str, reason: str = "") -> dict | None:
        entry, audit = _change(action, goods_id, by, reason)
        if action == "add":
            self.db[self.ENTRIES].replace_one({"_id": goods_id}, entry, upsert=True)
        else:
            entry = self.db[self.ENTRIES].find_one_and_delete({"_id": goods_id}, {"_id": 0})
        self.db[self.AUDIT].insert_one({**audit, "found": entry is not None})
        self.db[self.META].update_one({"_id": self.ENTRIES}, {"$inc": {"changes": 1}},
                                      upsert=True)
        log.info("blacklist %s %s by %s (%s.%s)", action, goods_id, by, self.db.name,
                 self.ENTRIES)
        return entry

    def audit(self, limit: int = 100) -> list[dict]:
        return list(self.db[self.AUDIT].find({}, {"_id": 0}).sort(
            [("at", -1), ("$natural", -1)]).limit(limit))


# ---------------------------------------------------------------- in each worker


class RulesHolder:
    """The ShopRules of a warehouse, re-read when the catalog pointer or the blacklist
    changes, looked at no more often than every `interval` seconds."""

    def __init__(self, root: str | Path, interval: float = 2.0, blacklist=None,
                 register=None):
        from engine.forgotten import FileRegister

        self.root, self.interval = Path(root), interval
        self.blacklist = blacklist if blacklist is not None else FileBlacklist(root)
        self.register = register if register is not None else FileRegister(root)
        self._rules = ShopRules()
        self._seen: tuple | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.errors = 0
        self.refresh()

    def current(self) -> ShopRules:
        if time.monotonic() - self._checked >= self.interval:
            self.refresh()
        return self._rules

    def _signature(self) -> tuple:
        return (current_catalog(self.root), self.blacklist.signature(),
                self.register.signature())

    def refresh(self, force: bool = False) -> ShopRules:
        """Re-read what changed; a request that finds another thread at it goes on with the
        rules in force."""
        if not self._lock.acquire(blocking=force):
            return self._rules
        try:
            self._checked = time.monotonic()
            seen = None
            try:
                seen = self._signature()
                if seen == self._seen and not force:
                    return self._rules
                catalog = seen[0]
                rules = _load_catalog(self.root, catalog) if catalog else ShopRules()
                rules = dataclasses.replace(rules, blacklist=self.blacklist.read(),
                                            forgotten=self.register.read())
            except (RulesError, PyMongoError) as exc:
                self.errors += 1
                if seen is not None:
                    self._seen = seen  # said once; read again when it changes
                log.error("%s; the shop rules in force stay", exc)
                return self._rules
            self._rules, self._seen = rules, seen
            return rules
        finally:
            self._lock.release()
