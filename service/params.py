"""Query parameters of the lookup routes: one set of rules for Flask views and the fast path.

Each parser takes the raw text (or None when absent) and returns the value, or raises the
JSON 400 naming the parameter and what it must be.
"""
from __future__ import annotations

from engine.recommender import SORT_KEYS
from service.errors import ApiError

MAX_LIMIT = 100
MAX_BASKET = 100
FLAGS = {"true": True, "1": True, "false": False, "0": False}


def limit(raw: str | None, default: int = 10) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}, "
                       f"not {raw[:40]!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}")
    return value


def min_confidence(raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ApiError(400, "invalid_min_confidence",
                       "min_confidence must be a number between 0 and 1")
    return value


def flag(name: str, raw: str | None) -> bool:
    value = FLAGS.get((raw or "false").lower())
    if value is None:
        raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
    return value


def sort(raw: str | None) -> str:
    value = raw or "confidence"
    if value not in SORT_KEYS:
        raise ApiError(400, "invalid_sort", f"sort must be one of {', '.join(SORT_KEYS)}")
    return value


def basket(payload) -> tuple[list[str], int]:
    """(goods ids as text, limit) from the decoded basket body {"items": [...], "limit": n}."""
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", 'the body must be a JSON object like '
                       '{"items": [97807, 121563], "limit": 10}')
    items = payload.get("items")
    if (not isinstance(items, list) or not 1 <= len(items) <= MAX_BASKET
            or not all(isinstance(i, str | int) and not isinstance(i, bool) for i in items)):
        raise ApiError(400, "invalid_items", f"items must be a list of 1 to {MAX_BASKET} "
                       "goods ids (numbers or strings)")
    raw_limit = payload.get("limit", 10)
    if not isinstance(raw_limit, int) or isinstance(raw_limit, bool):
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return [str(i) for i in items], limit(str(raw_limit))
