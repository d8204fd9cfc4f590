"""Which key chain the warehouse is keyed under: privacy/keys.json.

    privacy/keys.json   {"chain": [fingerprint, ...]} of privacy.hmac_key and its rotations

The fingerprints name the keys without revealing them (core.phones.key_fingerprint). A
configuration whose chain is not the warehouse's would make every shopper a stranger:
`check_keys` refuses it with the setting to change.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import ConfigError
from core.files import atomic_write
from core.phones import key_fingerprint

KEYS = Path("privacy") / "keys.json"


def chain_of(settings) -> list[str]:
    return [key_fingerprint(k) for k in settings.privacy.keys]


def recorded_chain(root: str | Path) -> list[str] | None:
    try:
        return json.loads((Path(root) / KEYS).read_text())["chain"]
    except (OSError, ValueError, KeyError):
        return None


def record_chain(root: str | Path, chain: list[str]) -> None:
    atomic_write(Path(root) / KEYS, json.dumps({"chain": chain}, indent=1))


def check_keys(settings, adopt: bool = False) -> None:
    """ConfigError when the configured key chain is not the one the warehouse's keys were
    made with (a changed privacy.hmac_key would make every shopper a stranger). `adopt`:
    a warehouse that records no chain yet records this one (the first clean)."""
    mine, theirs = chain_of(settings), recorded_chain(settings.root)
    if theirs is None and adopt:
        record_chain(settings.root, mine)
    if theirs is None or mine == theirs:
        return
    if mine == theirs[:len(mine)]:
        raise ConfigError(
            f"the warehouse {settings.root} was re-keyed by `shoprecs rotate-key` "
            f"({len(theirs) - len(mine)} rotation(s) this configuration lacks): append the "
            "new key to privacy.key_rotations (SHOPRECS_PRIVACY_KEY_ROTATIONS)")
    raise ConfigError(
        f"privacy.hmac_key (and privacy.key_rotations) are not the keys the warehouse "
        f"{settings.root} is keyed with (fingerprints {theirs}, configured {mine}): "
        "every shopper would be a stranger; set SHOPRECS_PRIVACY_HMAC_KEY to the key in use, "
        "or rotate it with `shoprecs rotate-key` (docs/privacy.md)")
