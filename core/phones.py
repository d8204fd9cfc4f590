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
from dataclasses import dataclass

_ALLOWED = re.compile(r"^[0-9 +()\-.]+$")
_NON_DIGITS = re.compile(r"\D")


class InvalidPhone(ValueError):
    """The text is not a phone number under the configured rules."""


@dataclass(frozen=True)
class PhoneRules:
    country_code: str = "7"
    trunk_prefix: str = "8"
    national_length: int = 10

    @property
    def full_length(self) -> int:
        return len(self.country_code) + self.national_length


def normalize(raw: str | None, rules: PhoneRules = PhoneRules()) -> str:
    """The digits-only international form of `raw`, or InvalidPhone saying why."""
    text = (raw or "").strip(" ")  # spaces only, exactly like Spark's trim()
    if not text:
        raise InvalidPhone("phone number is empty")
    if not _ALLOWED.match(text):
        raise InvalidPhone("phone number may hold only digits, spaces and + ( ) - .")
    digits = _NON_DIGITS.sub("", text)
    cc, n = rules.country_code, rules.full_length
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


def user_key(normalized: str, key: str) -> str:
    """HMAC-SHA256 of the normalized phone, hex: what clean/ and serving/ store."""
    return hmac.new(key.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def mask(text: str) -> str:
    """Hide all but the last two digits of anything that looks like a phone number."""
    return re.sub(r"[+0-9][0-9 ()\-.%]{6,}[0-9]", lambda m: "*" * 6 + m.group(0)[-2:], text)
