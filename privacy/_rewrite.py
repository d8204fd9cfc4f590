"""What the privacy jobs share: rewriting the files of the warehouse that hold shoppers.

Every rewrite is whole or not at all (core.files.atomic_write), so a killed job leaves each
file as it was or as it will be, and running the job again finishes it. Event files are
rewritten under the lock their writers take (engine/events.py), so no append is lost.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.files import atomic_write, flock
from core.phones import INVALID, PHONE_LIKE, PLACEHOLDER, InvalidPhone, PhoneRules, mask, normalize
from core.stores import mongo, mongo_is_a_store

KEYED_ZONES = ("clean", "models", "serving")
KEYED_COLLECTIONS = ("user_recs_", "history_")  # MongoDB: one document per shopper key
NOT_A_KEY = (None, INVALID, PLACEHOLDER)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def replace(path: Path, data: str | bytes) -> None:
    """Rewrite `path` whole (core.files.atomic_write), dropping a Hadoop checksum beside it:
    Spark's local file system checks a part file against its .crc sibling, and a rewritten
    file's old checksum would fail its next read."""
    atomic_write(path, data)
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)


def rewrite_text(path: Path, edit: Callable[[str], str]) -> bool:
    """Apply `edit` to the file's text; rewrite the file if that changed it."""
    text = path.read_text(encoding="utf-8")
    edited = edit(text)
    if edited != text:
        replace(path, edited.encode("utf-8"))
    return edited != text


# --- landing ---------------------------------------------------------------------------

def landed_days(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "landing" / "orders").glob("dt=*/_manifest.json"))


def rewrite_landing(day: Path, edit: Callable[[dict], bool],
                     edit_text: Callable[[str], str], note: dict | None = None,
                     same_rows: bool = False) -> int:
    """Rewrite the day (`edited_landing`) and its manifest (`stamp`) when anything changed
    (or `note` is given). Returns the number of lines changed."""
    data, changed = edited_landing(day, edit, edit_text)
    if not changed and note is None:
        return 0
    replace(day / "orders.jsonl", data)
    stamp(day, data, note, same_rows)
    return changed


def edited_landing(day: Path, edit: Callable[[dict], bool],
                   edit_text: Callable[[str], str]) -> tuple[bytes, int]:
    """The day's orders with `edit` applied to each (changes a record in place; True if it
    did), `edit_text` to each line that is no JSON object; and the number of lines changed."""
    out, changed = [], 0
    for line in (day / "orders.jsonl").read_bytes().decode("utf-8").splitlines():
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
    return "".join(line + "\n" for line in out).encode("utf-8"), changed


def stamp(day: Path, data: bytes, note: dict | None = None, same_rows: bool = False) -> str:
    """Rewrite the day's manifest for its orders' new bytes `data`, adding `note`; returns
    its new `sha256`. What the version fingerprint hashes (`trains_as`, models/train.py)
    follows it, so the next night trains a new version, unless `same_rows`: the edit leaves
    the rows cleaning makes as they were (retention), and the version stays the one these
    days already trained."""
    manifest = json.loads((day / "_manifest.json").read_text())
    if same_rows:
        manifest.setdefault("trains_as", manifest["sha256"])
    else:
        manifest.pop("trains_as", None)
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest.update(note or {})
    replace(day / "_manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest["sha256"]


def phone_field_masker(field: str) -> Callable[[str], str]:
    """Masks the value of the phone field wherever it appears in a text (a raw line that is
    no JSON object, a quarantined record): the rest of the text stays as it was."""
    pattern = re.compile(r'("' + re.escape(field) + r'"\s*:\s*)"(?:[^"\\]|\\.)*"?')
    return lambda text: pattern.sub(r'\1"<masked>"', text)


def spells(raw, digits: str | None, rules: PhoneRules) -> bool:
    """Whether `raw` is a spelling of the phone `digits` (never, when `digits` is None)."""
    with contextlib.suppress(InvalidPhone):
        return isinstance(raw, str) and normalize(raw, rules) == digits
    return False


def mask_phone(text: str, digits: str, rules: PhoneRules) -> str:
    """`text` with every spelling of the phone `digits` masked."""
    return PHONE_LIKE.sub(lambda m: mask(m[0]) if spells(m[0], digits, rules) else m[0], text)


# --- Parquet zones ---------------------------------------------------------------------

def parquet_files(root: Path, zones=KEYED_ZONES) -> Iterator[Path]:
    for zone in zones:  # a zone not made yet globs nothing
        yield from sorted(p for p in (root / zone).rglob("*.parquet")  # not Spark's staging,
                          if not any(part.startswith(".")  # wherever the warehouse is
                                     for part in p.relative_to(root).parts))


def rewrite_parquet(path: Path, edit: Callable[[pa.Table], tuple[pa.Table, int] | None]
                     ) -> int:
    """Apply `edit` to the file's table: None leaves it, else (new table, rows changed)."""
    edited = edit(pq.read_table(path, partitioning=None))
    if edited is None:
        return 0
    sink = pa.BufferOutputStream()
    pq.write_table(edited[0], sink, compression="snappy")
    replace(path, sink.getvalue().to_pybytes())
    return edited[1]


def column_in(table: pa.Table, column: str, keys) -> pa.Array | None:
    if column not in table.column_names:
        return None
    hit = pc.is_in(table[column], value_set=pa.array(list(keys), table.schema.field(
        column).type))
    return hit if pc.any(hit).as_py() else None


# --- events ----------------------------------------------------------------------------

def event_files(root: Path) -> Iterator[Path]:
    yield from sorted((root / "events").rglob("*.jsonl"))


def rewrite_events(path: Path, edit: Callable[[dict], dict | None | bool]) -> int:
    """Rewrite the file (`edited_events`) under the lock the service's event writers take on
    it (engine/events.py, FileSink), so nothing is appended to it while it is read and
    replaced."""
    with flock(path):
        data, changed = edited_events(path, edit)
        if changed:
            replace(path, data)
        return changed


def edited_events(path: Path, edit: Callable[[dict], dict | None | bool]
                  ) -> tuple[bytes, int]:
    """The file's events after edit(event): None drops it, True keeps it, a dict replaces
    it; and the number of events changed."""
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
    return "".join(line + "\n" for line in out).encode("utf-8"), changed


def mongo_db(settings):
    """MongoDB's database when MongoDB is a store (core/stores.py), else None."""
    return mongo(settings) if mongo_is_a_store(settings) else None


