"""Personal data in the warehouse: raw retention, erasure of one shopper, key rotation.

Where shoppers appear (docs/privacy.md has the whole table):

    landing/orders/dt=D/orders.jsonl   the phone, as the bus sent it; past retention only
                                       `_user_key` (the cleaning job reads either)
    quarantine/dt=D/*.json             phones masked, except inside unparseable records;
                                       past retention those are masked too
    clean/orders, models/<v>/, serving/<v>/user_recs
                                       `user_key` (models/<v>/ids/users: `key`, and its
                                       integer id in models/<v>/als/userFactors)
    events/*/dt=D/hour=H/*.jsonl       `shopper`: the user_key
    MongoDB user_recs_<v>, impressions, feedback (when it is a store)

`forget` removes one shopper from all of them (their orders stay, as guest baskets);
`retention` rewrites raw orders past `privacy.raw_retention_days` without phones;
`rotate` re-keys everything under one more key of the chain. All three run under the
warehouse lock and write each file atomically (a temp file renamed over it), so a killed
run leaves every file whole and a re-run finishes the job. Nothing here needs Spark: the
service's admin endpoint erases with the same code.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.bus_profile import BusProfile
from core.errors import ConfigError
from core.phones import (
    INVALID,
    PHONE_LIKE,
    PLACEHOLDER,
    InvalidPhone,
    PhoneRules,
    key_fingerprint,
    mask,
    normalize,
    rekey,
    shopper_key,
    user_key,
)
from engine.lock import warehouse_lock
from engine.mongo_engine import registers
from engine.privacy import FileRegister, chain_of, check_keys, record_chain, recorded_chain

log = logging.getLogger(__name__)

PENDING = Path("privacy") / "pending"  # erasures the service recorded but could not run
ROTATION = Path("privacy") / "rotation.json"
KEYED_ZONES = ("clean", "models", "serving")
KEYED_COLLECTIONS = ("user_recs_", "history_")  # MongoDB: one document per shopper key
NOT_A_KEY = (None, INVALID, PLACEHOLDER)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _rules(settings) -> PhoneRules:
    return PhoneRules(settings.phone_country_code, settings.phone_trunk_prefix,
                      settings.phone_national_length)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    # Hadoop's local file system checks a part file against its .crc sibling: a rewritten
    # file's old checksum would fail Spark's next read of it.
    with contextlib.suppress(FileNotFoundError):
        path.with_name(f".{path.name}.crc").unlink()


# --- landing ---------------------------------------------------------------------------

def landed_days(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "landing" / "orders").glob("dt=*/_manifest.json"))


def _rewrite_landing(day: Path, edit: Callable[[dict], bool],
                     edit_text: Callable[[str], str], note: dict | None = None) -> int:
    """Apply `edit` (changes a record in place; True if it did) to each order of the day,
    `edit_text` to each line that is no JSON object; rewrite the day and its manifest when
    anything changed (or `note` is given). Returns the number of lines changed."""
    lines = (day / "orders.jsonl").read_bytes().decode("utf-8").splitlines()
    out, changed = [], 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            if edit(record):
                changed += 1
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        else:
            masked = edit_text(line)
            changed += masked != line
            line = masked
        out.append(line)
    if not changed and note is None:
        return 0
    data = "".join(line + "\n" for line in out).encode("utf-8")
    _replace(day / "orders.jsonl", data)
    manifest = json.loads((day / "_manifest.json").read_text())
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest.update(note or {})
    _replace(day / "_manifest.json", json.dumps(manifest, indent=1).encode())
    return changed


def _phone_field_masker(field: str) -> Callable[[str], str]:
    """Masks the value of the phone field wherever it appears in a text (a raw line that is
    no JSON object, a quarantined record): the rest of the text stays as it was."""
    pattern = re.compile(r'("' + re.escape(field) + r'"\s*:\s*)"(?:[^"\\]|\\.)*"?')
    return lambda text: pattern.sub(r'\1"<masked>"', text)


def _mask_phone(text: str, digits: str, rules: PhoneRules) -> str:
    """`text` with every spelling of the phone `digits` masked."""
    def one(match: re.Match) -> str:
        with contextlib.suppress(InvalidPhone):
            if normalize(match.group(0), rules) == digits:
                return mask(match.group(0))
        return match.group(0)
    return PHONE_LIKE.sub(one, text)


# --- Parquet zones ---------------------------------------------------------------------

def _parquet_files(root: Path, zones=KEYED_ZONES) -> Iterator[Path]:
    for zone in zones:
        base = root / zone
        if base.exists():
            yield from sorted(p for p in base.rglob("*.parquet")
                              if not any(part.startswith(".") for part in p.parts))


def _rewrite_parquet(path: Path, edit: Callable[[pa.Table], tuple[pa.Table, int] | None]
                     ) -> int:
    """Apply `edit` to the file's table: None leaves it, else (new table, rows changed)."""
    edited = edit(pq.read_table(path, partitioning=None))
    if edited is None:
        return 0
    sink = pa.BufferOutputStream()
    pq.write_table(edited[0], sink, compression="snappy")
    _replace(path, sink.getvalue().to_pybytes())
    return edited[1]


def _column_in(table: pa.Table, column: str, keys) -> pa.Array | None:
    if column not in table.column_names:
        return None
    hit = pc.is_in(table[column], value_set=pa.array(list(keys), table.schema.field(
        column).type))
    return hit if pc.any(hit).as_py() else None


# --- events ----------------------------------------------------------------------------

def _event_files(root: Path) -> Iterator[Path]:
    base = root / "events"
    if base.exists():
        yield from sorted(base.rglob("*.jsonl"))


@contextlib.contextmanager
def _writers_held(path: Path):
    """Hold the lock the service's event writers take on their file (engine/events.py,
    FileSink): nothing is appended to it while it is read and replaced."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _rewrite_events(path: Path, edit: Callable[[dict], dict | None | bool]) -> int:
    """edit(event) -> None drops it, True keeps it, a dict replaces it."""
    with _writers_held(path):
        return _rewrite_events_held(path, edit)


def _rewrite_events_held(path: Path, edit) -> int:
    out, changed = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            out.append(line)  # a line cut by a kill: not ours to judge
            continue
        result = edit(event)
        if result is True:
            out.append(line)
        else:
            changed += 1
            if result is not None:
                out.append(json.dumps(result, separators=(",", ":")))
    if changed:
        _replace(path, "".join(line + "\n" for line in out).encode("utf-8"))
    return changed


def _mongo(settings):
    if settings.mongo_uri and (settings.service_store == "mongo"
                               or settings.publish_store in ("mongo", "both")):
        from engine.mongo import connect

        return connect(settings.mongo_uri)[settings.mongo_db]
    return None


# --- forget ----------------------------------------------------------------------------

def erase(settings, digits: str | None, key: str, requested_at: str) -> dict:
    """Remove the shopper (`digits`, their normalized phone when known, and `key`) from
    every zone; their orders stay as guest baskets. Idempotent. Counts what it changed."""
    root = settings.warehouse
    rules = _rules(settings)
    profile = BusProfile.from_settings(settings)
    phone_field = profile.phone_field
    counts = dict.fromkeys(("landing", "quarantine", "clean", "models", "serving", "events",
                            "mongodb"), 0)

    def same(raw) -> bool:
        if digits is None or not isinstance(raw, str):
            return False
        try:
            return normalize(raw, rules) == digits
        except InvalidPhone:
            return False

    def edit(order: dict) -> bool:
        if same(order.get(phone_field)) or order.get("_user_key") == key:
            order[phone_field] = None
            order.pop("_user_key", None)
            return True
        return False

    def edit_text(line: str) -> str:
        return _mask_phone(line, digits, rules) if digits else line

    for day in landed_days(root):
        counts["landing"] += _rewrite_landing(day, edit, edit_text)
    if digits:
        for path in sorted((root / "quarantine").rglob("*.json")):
            text = path.read_text(encoding="utf-8")
            masked = _mask_phone(text, digits, rules)
            if masked != text:
                _replace(path, masked.encode("utf-8"))
                counts["quarantine"] += 1
    for path in _parquet_files(root):
        zone = path.relative_to(root).parts[0]

        def drop(table: pa.Table, zone=zone, path=path):
            column = "key" if path.relative_to(root).parts[2:4] == ("ids", "users") \
                else "user_key"
            hit = _column_in(table, column, [key])
            if hit is None:
                return None
            hits = pc.sum(hit).as_py()
            if zone == "clean":  # the orders stay, as a guest's
                return table.set_column(table.column_names.index("user_key"), "user_key",
                                        pc.if_else(hit, pa.scalar(None, pa.string()),
                                                   table["user_key"])), hits
            if column == "key":  # its ALS factors go with the mapping row
                _drop_factors(path.parents[2], table.filter(hit)["id"].to_pylist())
            return table.filter(pc.invert(hit)), hits
        counts[zone] += _rewrite_parquet(path, drop)
    for manifest in (root / "serving").glob("*/manifest.json"):
        _recount(manifest)
    for path in _event_files(root):
        counts["events"] += _rewrite_events(
            path, lambda e: None if e.get("shopper") == key else True)
    db = _mongo(settings)
    if db is not None:
        for name in db.list_collection_names():
            if name.startswith(KEYED_COLLECTIONS):
                counts["mongodb"] += db[name].delete_one({"_id": key}).deleted_count
            elif name in ("impressions", "feedback"):
                counts["mongodb"] += db[name].delete_many({"shopper": key}).deleted_count
    with contextlib.suppress(FileNotFoundError):
        (root / PENDING / f"{key}.json").unlink()
    return counts


def _drop_factors(model: Path, ids: list[int]) -> None:
    """Remove the shopper's rows from the version's saved ALS model (userFactors)."""
    def drop(table: pa.Table):
        hit = _column_in(table, "id", ids)
        return None if hit is None else (table.filter(pc.invert(hit)), len(ids))
    for path in sorted((model / "als" / "userFactors").glob("*.parquet")):
        _rewrite_parquet(path, drop)


def _recount(manifest_path: Path) -> None:
    """serving/<v>/manifest.json's user_recs count after rows were removed (the service
    checks it on load)."""
    manifest = json.loads(manifest_path.read_text())
    counts = manifest.get("counts", {})
    folder = manifest_path.parent / "user_recs"
    if "user_recs" in counts and folder.exists():
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet"))
        if rows != counts["user_recs"]:
            counts["user_recs"] = rows
            _replace(manifest_path, json.dumps(manifest, indent=2).encode())


def key_of(settings, phone: str) -> tuple[str, str]:
    """(normalized digits, user_key) of a phone in any format; ValueError says why not."""
    digits = normalize(phone, _rules(settings))
    return digits, user_key(digits, settings.hmac_keys)


def record(settings, key: str) -> tuple[str, bool]:
    """Write the request into every register; (when it was first requested, new?)."""
    now, new = _now(), False
    for register in registers(settings):
        new = register.add(key, now) or new
    return FileRegister(settings.warehouse).read().get(key, now), new


def forget(settings, phone: str, wait: float | None = None, on_wait=None) -> dict:
    """`shoprecs forget <phone>`: record the request, then erase the shopper everywhere,
    under the warehouse lock (waiting `wait`, default lock.wait_seconds; `on_wait(holder)`
    is told whom it waits for)."""
    digits, key = key_of(settings, phone)
    with warehouse_lock(settings, wait, on_wait):
        check_keys(settings)
        requested_at, new = record(settings, key)
        removed = erase(settings, digits, key, requested_at)
    log.info("forgot shopper %s...: %s", key[:8], removed)
    return {"key": key, "requested_at": requested_at, "new_request": new, "removed": removed}


def defer(settings, phone: str) -> dict:
    """The service's side of a request, before it erases: recorded in every register (the
    service answers the shopper as unknown from now on) and noted as pending, so that the
    nightly run's `erase_pending` finishes it if the service cannot (killed, or a run holds
    the warehouse for longer than lock.wait_seconds)."""
    digits, key = key_of(settings, phone)
    requested_at, new = record(settings, key)
    path = settings.warehouse / PENDING / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, json.dumps({"requested_at": requested_at}).encode())
    return {"key": key, "requested_at": requested_at, "new_request": new, "pending": True}


def erase_pending(settings) -> list[str]:
    """Finish the erasures the service deferred (the nightly privacy task). Without their
    phones only the key is known: the landing zone is searched by `_user_key` and by
    the key of each raw phone."""
    done = []
    with warehouse_lock(settings):
        # a service process that had not yet re-read the register may have written a fresh
        # request's key in the seconds after its erasure: the next night looks again
        recent = {k for k, when in FileRegister(settings.warehouse).read().items()
                  if when >= (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).isoformat()}
        if recent:
            for path in _event_files(settings.warehouse):
                _rewrite_events(path, lambda e: None if e.get("shopper") in recent else True)
        for path in sorted((settings.warehouse / PENDING).glob("*.json")):
            key = path.stem
            requested_at = json.loads(path.read_text())["requested_at"]
            digits = _digits_of(settings, key)
            erase(settings, digits, key, requested_at)
            done.append(key)
    return done


def _digits_of(settings, key: str) -> str | None:
    """The normalized phone whose key is `key`, if a raw landed order still holds it."""
    rules, field = _rules(settings), BusProfile.from_settings(settings).phone_field
    for day in landed_days(settings.warehouse):
        for line in (day / "orders.jsonl").read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, InvalidPhone, AttributeError, TypeError):
                digits = normalize(json.loads(line).get(field), rules)
                if user_key(digits, settings.hmac_keys) == key:
                    return digits
    return None


def scrub(settings, orders: list[dict], forgotten: dict[str, str]) -> int:
    """Extract's side: the phone of an order a forgotten shopper placed before their request
    is dropped before it lands (a backfill must not bring them back). Returns how many."""
    if not forgotten:
        return 0
    rules = _rules(settings)
    profile = BusProfile.from_settings(settings)
    field = profile.phone_field
    dropped = 0
    for order in orders:
        raw = order.get(field)
        if not isinstance(raw, str):
            continue
        key = shopper_key(raw, rules, settings.hmac_keys)
        when = forgotten.get(key) if key not in NOT_A_KEY else None
        if when is None:
            continue
        placed = profile.order_time(order) if profile.date_field else None
        if placed is None or placed.isoformat() <= when:
            order[field] = None
            dropped += 1
    return dropped


# --- retention -------------------------------------------------------------------------

def retention(settings, today: dt.date, apply: bool = False) -> dict:
    """Raw orders (and quarantined records) of days older than privacy.raw_retention_days,
    once cleaned, keep each order's key instead of its phone; a dry run only counts."""
    days_kept = settings.privacy_raw_retention_days
    report = {"limit": None, "days": [], "orders": 0, "quarantine_files": 0, "applied": apply}
    if days_kept <= 0:
        return report
    limit = today - dt.timedelta(days=days_kept)
    report["limit"] = limit.isoformat()
    root = settings.warehouse
    rules = _rules(settings)
    field = BusProfile.from_settings(settings).phone_field
    placeholder = re.compile(settings.phone_placeholders).search \
        if settings.phone_placeholders else None
    cleaned = cleaned_days(root)
    masker = _phone_field_masker(field)

    def edit(order: dict) -> bool:
        if field not in order or order.get(field) is None:
            return False
        key = shopper_key(order.pop(field), rules, settings.hmac_keys, placeholder)
        if key is not None:
            order["_user_key"] = key
        return True

    with warehouse_lock(settings):
        for day in landed_days(root):
            name = day.name[3:]
            manifest = json.loads((day / "_manifest.json").read_text())
            if name >= limit.isoformat() or "retention" in manifest:
                continue
            if cleaned.get(name) != manifest["sha256"]:
                log.warning("retention: %s is past the limit but was not cleaned as landed; "
                            "kept (run `shoprecs clean --date %s`)", name, name)
                continue
            report["days"].append(name)
            if not apply:
                report["orders"] += manifest.get("orders", 0)
                continue
            report["orders"] += _rewrite_landing(
                day, edit, masker, note={"retention": {"at": _now(), "phones": "removed"}})
            mark_cleaned(root, name, json.loads((day / "_manifest.json").read_text())["sha256"])
        for day in sorted((root / "quarantine").glob("dt=*")):
            if day.name[3:] >= limit.isoformat() or (day / "_retained").exists():
                continue
            for path in sorted(day.glob("*.json")):
                report["quarantine_files"] += 1
                if apply:
                    _rewrite_quarantine(path, masker)
            if apply:
                (day / "_retained").write_text(_now())
    return report


def _rewrite_quarantine(path: Path, masker: Callable[[str], str]) -> None:
    """Quarantined records are JSON lines whose `record` is text (an unparseable record as
    it came): the phone field inside it is masked, escaped quotes and all."""
    text = path.read_text(encoding="utf-8")
    masked = "".join(_mask_record(line, masker) for line in text.splitlines(keepends=True))
    if masked != text:
        _replace(path, masked.encode("utf-8"))


def _mask_record(line: str, masker: Callable[[str], str]) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return masker(line)
    if not isinstance(entry, dict) or not isinstance(entry.get("record"), str):
        return line
    masked = masker(entry["record"])
    if masked == entry["record"]:
        return line
    entry["record"] = masked
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"


CLEANED = Path("clean") / "_cleaned.json"


def cleaned_days(root: Path) -> dict[str, str]:
    """day -> the sha256 of the landed file the cleaning job last cleaned for it."""
    try:
        return json.loads((root / CLEANED).read_text())
    except (OSError, ValueError):
        return {}


def mark_cleaned(root: Path, *days_and_hashes) -> None:
    """Record that the landed days (day, sha256 pairs) were cleaned as they are."""
    done = cleaned_days(root)
    pairs = iter(days_and_hashes)
    done.update(zip(pairs, pairs, strict=True))
    path = root / CLEANED
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, json.dumps(done, indent=0, sort_keys=True).encode())


# --- rotation --------------------------------------------------------------------------

def rotate(settings, new_key: str) -> dict:
    """Re-key every stored key under one more key of the chain (`core.phones.rekey`), in
    one pass, resumable: privacy/rotation.json journals each file, so a killed rotation
    run again with the same key finishes without re-keying anything twice. Afterwards
    the configuration must append `new_key` to privacy.key_rotations."""
    if not new_key or new_key in settings.hmac_keys:
        raise ConfigError("the new key must be set and differ from every key in use "
                          "(SHOPRECS_PRIVACY_NEW_KEY)")
    root = settings.warehouse
    target = [*chain_of(settings), key_fingerprint(new_key)]
    counts = dict.fromkeys(("landing", "parquet", "events", "register", "mongodb"), 0)
    with warehouse_lock(settings):
        check_keys(settings)
        if recorded_chain(root) is None:
            record_chain(root, chain_of(settings))
        journal_path = root / ROTATION
        journal = json.loads(journal_path.read_text()) if journal_path.exists() else {
            "to": target, "staged": [], "done": []}
        if journal["to"] != target:
            raise ConfigError("an unfinished rotation to another key is journaled in "
                              f"{journal_path}: finish it with that key first")

        def save():
            _replace(journal_path, json.dumps(journal).encode())

        journal_path.parent.mkdir(parents=True, exist_ok=True)
        save()
        new = lambda k: k if k in NOT_A_KEY else rekey(k, new_key)  # noqa: E731

        def once(path: Path, produce: Callable[[], bytes | None]) -> bool:
            """Re-key one file exactly once, whatever kill came before."""
            name = str(path.relative_to(root))
            staged = path.with_name(f".{path.name}.rekey.tmp")
            if name in journal["done"]:
                return False
            if name in journal["staged"]:
                if staged.exists():  # killed between staging and the rename
                    os.replace(staged, path)
            else:
                data = produce()
                if data is None:
                    journal["done"].append(name)
                    save()
                    return False
                staged.write_bytes(data)
                journal["staged"].append(name)
                save()
                os.replace(staged, path)
            with contextlib.suppress(FileNotFoundError):
                path.with_name(f".{path.name}.crc").unlink()
            journal["staged"].remove(name)
            journal["done"].append(name)
            save()
            return True

        def landing(day: Path) -> bytes | None:
            lines = (day / "orders.jsonl").read_text(encoding="utf-8").splitlines()
            out, changed = [], False
            for line in lines:
                with contextlib.suppress(ValueError):
                    order = json.loads(line)
                    if isinstance(order, dict) and order.get("_user_key") not in NOT_A_KEY:
                        order["_user_key"] = new(order["_user_key"])
                        line, changed = json.dumps(order, ensure_ascii=False,
                                                   separators=(",", ":")), True
                out.append(line)
            return "".join(x + "\n" for x in out).encode() if changed else None

        for day in landed_days(root):
            if once(day / "orders.jsonl", lambda day=day: landing(day)):
                counts["landing"] += 1
                manifest = json.loads((day / "_manifest.json").read_text())
                manifest["sha256"] = hashlib.sha256(
                    (day / "orders.jsonl").read_bytes()).hexdigest()
                _replace(day / "_manifest.json", json.dumps(manifest, indent=1).encode())
                if day.name[3:] in cleaned_days(root):
                    mark_cleaned(root, day.name[3:], manifest["sha256"])

        def parquet(path: Path) -> bytes | None:
            table = pq.read_table(path, partitioning=None)
            column = "key" if path.relative_to(root).parts[2:4] == ("ids", "users") \
                else "user_key"
            if column not in table.column_names:
                return None
            keys = pa.array([None if k is None else new(k) for k in
                             table[column].to_pylist()], pa.string())
            table = table.set_column(table.column_names.index(column),
                                     table.schema.field(column), keys)
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="snappy")
            return sink.getvalue().to_pybytes()

        for path in _parquet_files(root):
            counts["parquet"] += once(path, lambda path=path: parquet(path))

        def events(path: Path) -> bytes | None:
            out, changed = [], False
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("shopper"):
                        event["shopper"], changed = new(event["shopper"]), True
                        line = json.dumps(event, separators=(",", ":"))
                out.append(line)
            return "".join(x + "\n" for x in out).encode() if changed else None

        for path in _event_files(root):
            with _writers_held(path):
                counts["events"] += once(path, lambda path=path: events(path))
        for register in registers(settings):
            for key in list(register.read()):
                if f"register:{key}" not in journal["done"]:
                    register.rename(key, new(key))
                    journal["done"].append(f"register:{key}")
                    save()
                    counts["register"] += 1
        db = _mongo(settings)
        if db is not None:
            counts["mongodb"] = _rotate_mongo(db, new, journal, save, target[-1])
        record_chain(root, target)
        journal_path.unlink()
    log.info("re-keyed the warehouse %s: %s", root, counts)
    return counts


def _rotate_mongo(db, new, journal: dict, save, mark: str) -> int:
    """user_recs_<v>, history_<v>: re-keyed into a staging collection renamed over the old
    one (atomic;
    a killed run rebuilds the staging copy); impressions and feedback: each document
    re-keyed once, marked with the target chain. Each collection journaled when done."""
    moved = 0
    for name in sorted(db.list_collection_names()):
        if f"mongodb:{name}" in journal["done"]:
            continue
        coll = db[name]
        if name.startswith(KEYED_COLLECTIONS):
            staging = db[f"{name}.rekey"]
            staging.drop()
            docs = [{**doc, "_id": new(doc["_id"])} for doc in coll.find()]
            if docs:
                staging.insert_many(docs, ordered=False)
                staging.rename(name, dropTarget=True)
            moved += len(docs)
        elif name in ("impressions", "feedback"):
            for doc in list(coll.find({"shopper": {"$ne": None}, "_rekeyed": {"$ne": mark}},
                                      {"shopper": 1})):
                coll.update_one({"_id": doc["_id"]}, {"$set": {
                    "shopper": new(doc["shopper"]), "_rekeyed": mark}})
                moved += 1
        else:
            continue
        journal["done"].append(f"mongodb:{name}")
        save()
    return moved
