"""Phone numbers: one normalized key per shopper, and the keyed hash published for serving.

The rules (the cleaning job calls this module too, through `etl.clean.phone_keys`):

* Allowed characters are digits, spaces, `+`, `(`, `)`, `-` and `.`; anything else
  (letters, say) makes the number invalid.
* `+` followed by the country code and the national number: kept as digits.
* A national number with the trunk prefix (`8` in Russia): the prefix becomes the
  country code (`89153706507` -> `79153706507`).
* The bare national number (10 digits): the country code is prepended.
* Anything else with the default country's length is invalid; a `+` number of another
  country is accepted when it has 8-15 digits (E.164).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence

from core.config import Phone

_ALLOWED = re.compile(r"^[0-9 +()\-.]+$")
_NON_DIGITS = re.compile(r"\D")


class InvalidPhone(ValueError):
    """The text is not a phone number under the configured rules."""


class PhoneRules(Phone):
    """The [phone] section (its fields and defaults, checked as the configuration checks
    them): the rules a number is read by."""

    @classmethod
    def from_settings(cls, phone) -> PhoneRules:
        """The rules of the [phone] section."""
        return cls(**dict(phone))


def normalize(raw: str | None, rules: PhoneRules = PhoneRules()) -> str:
    """The digits-only international form of `raw`, or InvalidPhone saying why."""
    text = (raw or "").strip(" ")  # spaces only, exactly like Spark's trim()
    if not text:
        raise InvalidPhone("phone number is empty")
    if not _ALLOWED.match(text):
        raise InvalidPhone("phone number may hold only digits, spaces and + ( ) - .")
    digits = _NON_DIGITS.sub("", text)
    cc, n = rules.country_code, len(rules.country_code) + rules.national_length
    if text.startswith("+"):
        if digits.startswith(cc) and len(digits) == n:
            return digits
        if not digits.startswith(cc) and 8 <= len(digits) <= 15:
            return digits
    elif len(digits) == n and digits.startswith(rules.trunk_prefix):
        return cc + digits[len(rules.trunk_prefix):]
    elif len(digits) == n and digits.startswith(cc):
        return digits
    elif len(digits) == rules.national_length:
        return cc + digits
    raise InvalidPhone(f"phone number has {len(digits)} digits, which fits no known format")


def user_key(normalized: str, key: str | Sequence[str]) -> str:
    """HMAC-SHA256 of the normalized phone, hex: what clean/ and serving/ store.

    `key` may be a chain (privacy.hmac_key, then each key of privacy.key_rotations): the
    phone is keyed by the first, and each rotation keys the key before it (`rekey`), which
    is how a rotation re-keys stored data without the phones (docs/privacy.md)."""
    keys = (key,) if isinstance(key, str) else tuple(key)
    digest = hmac.new(keys[0].encode(), normalized.encode(), hashlib.sha256).hexdigest()
    for rotation in keys[1:]:
        digest = rekey(digest, rotation)
    return digest


def rekey(stored: str, rotation: str) -> str:
    """A stored key under one more rotation of the chain."""
    return hmac.new(rotation.encode(), stored.encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: str) -> str:
    """Names a key without revealing it: what privacy/keys.json records."""
    return hmac.new(key.encode(), b"shoprecs key fingerprint", hashlib.sha256).hexdigest()[:12]


INVALID = ""  # what `shopper_key` gives a phone that breaks the rules (a key is 64 hex)
PLACEHOLDER = "-"  # ... and a placeholder number, nobody's (phone.placeholders)


def shopper_key(raw: str | None, rules: PhoneRules, key: str | Sequence[str],
                placeholder: Callable[[str], object] | None = None) -> str | None:
    """A phone as sent -> its `user_key`; None when blank, INVALID when no phone,
    PLACEHOLDER when `placeholder` (e.g. a compiled pattern's search) matches its national
    number. The cleaning job and the retention of raw orders both classify with it."""
    if raw is None or not str(raw).strip(" "):
        return None
    try:
        digits = normalize(str(raw), rules)
    except InvalidPhone:
        return INVALID
    cc = rules.country_code
    if placeholder is not None and placeholder(digits[len(cc):] if digits.startswith(cc)
                                               else digits):
        return PLACEHOLDER
    return user_key(digits, key)


# Anything that may be a phone in any format the rules accept: a digit (after an optional
# `+` or `(`), then at least six more digits and separators (space, `(`, `)`, `-`, `.`,
# and `+`, which a query string sends for a space), ending in a digit. Percent-encoded
# text is decoded before it is masked (service/accesslog.py).
PHONE_LIKE = re.compile(r"[+(]?[0-9][0-9 ()\-.+]{6,}[0-9]")


def mask(text: str) -> str:
    """Hide all but the last two digits of anything that looks like a phone number."""
    return PHONE_LIKE.sub(lambda m: "*" * 6 + m.group(0)[-2:], text)
