"""API keys (header `X-API-Key`), compared in constant time.

Keys come from settings as a comma-separated string (`SHOPRECS_ADMIN_API_KEYS=k1,k2`) or a
TOML list. Admin endpoints are disabled (403) while no admin key is configured;
storefront endpoints are open unless storefront keys are configured.
"""
from __future__ import annotations

import hmac

from service.errors import ApiError

HEADER = "X-API-Key"
ENVIRON_KEY = "HTTP_X_API_KEY"


def parse_keys(value) -> tuple[bytes, ...]:
    """Keys from "k1, k2" or ["k1", "k2"]; blanks dropped."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(k.strip().encode() for k in items if str(k).strip())


def key_matches(given: str | None, keys: tuple[bytes, ...]) -> bool:
    """True if `given` equals one of `keys`; every key is compared, in constant time."""
    if given is None:
        return False
    # WSGI header values are latin-1 text; compare bytes so any value is comparable
    raw = given.encode("latin-1", "replace")
    return any([hmac.compare_digest(raw, key) for key in keys])


def require_key(given: str | None, keys: tuple[bytes, ...], what: str, setting: str) -> None:
    """Raise the JSON 401/403 unless `given` is one of `keys`."""
    if not keys:
        raise ApiError(403, "api_disabled", f"{what} endpoints are disabled: no API key is "
                       f"configured; set {setting}")
    if given is None:
        raise ApiError(401, "missing_api_key", f"{what} endpoints need an API key in the "
                       f"{HEADER} header")
    if not key_matches(given, keys):
        raise ApiError(401, "invalid_api_key", f"the {HEADER} header holds no valid {what} "
                       f"API key; use one of {setting}")
