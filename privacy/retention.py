"""Raw retention: landed orders past `privacy.raw_retention_days` keep only their key.

Once the cleaning job has cleaned a landed day's exact bytes (etl/clean.py's record), the
day's raw orders keep `_user_key` in place of the phone (the cleaning job reads either), and
the phone field inside quarantined records is masked. The nightly privacy step applies it.

Run with: shoprecs retention --apply   (without --apply: a dry run)
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable

from core.bus_profile import BusProfile
from core.locks import warehouse_lock
from core.phones import PhoneRules, shopper_key
from etl.clean import cleaned_days, mark_cleaned
from privacy._rewrite import landed_days, phone_field_masker, rewrite_landing, rewrite_text, utc_now

log = logging.getLogger(__name__)


def retention(settings, today: dt.date, apply: bool = False) -> dict:
    """Raw orders (and quarantined records) of days older than privacy.raw_retention_days,
    once cleaned, keep each order's key instead of its phone; a dry run only counts."""
    days_kept = settings.privacy.raw_retention_days
    report = {"limit": None, "days": [], "orders": 0, "quarantine_files": 0, "applied": apply}
    if days_kept <= 0:
        return report
    limit = today - dt.timedelta(days=days_kept)
    report["limit"] = limit.isoformat()
    root = settings.root
    rules = PhoneRules.from_settings(settings.phone)
    field = BusProfile.from_settings(settings.bus).phone_field
    placeholder = re.compile(settings.phone.placeholders).search \
        if settings.phone.placeholders else None
    cleaned = cleaned_days(root)
    masker = phone_field_masker(field)

    def edit(order: dict) -> bool:
        if field not in order or order.get(field) is None:
            return False
        key = shopper_key(order.pop(field), rules, settings.privacy.keys, placeholder)
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
            report["orders"] += rewrite_landing(
                day, edit, masker, note={"retention": {"at": utc_now(), "phones": "removed"}},
                same_rows=True)
            mark_cleaned(root, name, json.loads((day / "_manifest.json").read_text())["sha256"])
        for day in sorted((root / "quarantine").glob("dt=*")):
            if day.name[3:] >= limit.isoformat() or (day / "_retained").exists():
                continue
            for path in sorted(day.glob("*.json")):
                report["quarantine_files"] += 1
                if apply:
                    rewrite_text(path, lambda text: "".join(
                        _mask_record(line, masker) for line in text.splitlines(keepends=True)))
            if apply:
                (day / "_retained").write_text(utc_now())
    return report


def _mask_record(line: str, masker: Callable[[str], str]) -> str:
    """Quarantined records are JSON lines whose `record` is text (an unparseable record as
    it came): the phone field inside it is masked, escaped quotes and all."""
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


