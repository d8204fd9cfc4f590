"""Who may call what: API keys (header `X-API-Key`), compared in constant time.

Every route has an access level, declared with it (service/api.py, `endpoint(access=...)`)
and checked in one place before the view runs, so before a body is read:

    public      /health, /ready, /metrics, /openapi.json: no key, ever
    storefront  everything else that answers about goods or shoppers (recommendations,
                similar goods, baskets, associations, POST /events, /experiments, /models,
                /merch): a storefront or an admin key when `storefront.api_keys` is set;
                open when it is not (docs/security.md says what that exposes)
    admin       /admin/*: an admin key, always; disabled (403) while `admin.api_keys` is
                empty

Keys come from settings as a comma-separated string (`SHOPRECS_ADMIN_API_KEYS=k1,k2`).
The merchandisers' page, opened in a browser, may give its key as the password of HTTP
Basic authentication (the browser asks for it on the 401).
"""
from __future__ import annotations

import hmac

from flask import request

from service.errors import ApiError

HEADER = "X-API-Key"
ACCESS = ("public", "storefront", "admin")
_levels: dict[str, str] = {}  # Flask endpoint name -> access level
BROWSER_PAGES = {"merch.page"}  # endpoints a browser opens: Basic auth offered on 401


def parse_keys(value: str) -> tuple[bytes, ...]:
    """Keys from "k1, k2"; blanks dropped."""
    return tuple(k.strip().encode() for k in (value or "").split(",") if k.strip())


def declare(endpoint: str, access: str) -> None:
    """Record the access level of a Flask endpoint (`blueprint.view`)."""
    if access not in ACCESS:
        raise ValueError(f"access must be one of {ACCESS}, not {access!r}")
    _levels[endpoint] = access


def given_key() -> str | None:
    """The request's key: the X-API-Key header, else a Basic authentication password."""
    key = request.headers.get(HEADER)
    if key is None and request.authorization is not None:
        key = request.authorization.password
    return key


def require_key(given: str | None, keys: tuple[bytes, ...], what: str, setting: str) -> None:
    """Raise the JSON 401/403 unless `given` is one of `keys`."""
    if not keys:
        raise ApiError(403, "api_disabled", f"{what} endpoints are disabled: no API key is "
                       f"configured; set {setting}")
    if given is None:
        raise ApiError(401, "missing_api_key", f"{what} endpoints need an API key in the "
                       f"{HEADER} header")
    # WSGI header values are latin-1 text; compare bytes so any value is comparable
    raw = given.encode("latin-1", "replace")
    if not any([hmac.compare_digest(raw, key) for key in keys]):  # every key, constant time
        raise ApiError(401, "invalid_api_key", f"the {HEADER} header holds no valid {what} "
                       f"API key; use one of {setting}")


def access_check(admin: tuple[bytes, ...], storefront: tuple[bytes, ...]):
    """Flask's before_request for these keys: the key the route's access level asks for.
    (On the request path: a storefront route of an unkeyed service costs one lookup.)"""
    levels = _levels

    def check_access() -> None:
        level = levels.get(request.endpoint or "", "storefront")
        if level == "public" or (level == "storefront" and not storefront) \
                or request.endpoint is None:  # no such route: the 404 follows
            return
        given = given_key()
        try:
            if level == "admin":
                require_key(given, admin, "admin", "SHOPRECS_ADMIN_API_KEYS")
            else:
                require_key(given, storefront + admin, "storefront",
                            "SHOPRECS_STOREFRONT_API_KEYS")
        except ApiError as exc:
            if exc.code == 401 and request.endpoint in BROWSER_PAGES:
                exc.www_authenticate = 'Basic realm="shoprecs", charset="UTF-8"'
            raise
    return check_access
