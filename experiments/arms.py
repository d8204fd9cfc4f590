"""A/B tests by configuration: which arm a shopper is in, and what that arm is shown.

    [experiment]
    name = "model-vs-popular"            # empty: no experiment running
    arms = "control:model:50, popular:popular:50"

An arm is `name:variant:share`; shares are percentages summing to 100. Variants:

    model     the served version's answers (what runs without an experiment)
    popular   the best-selling goods the shop's rules allow, the same for everybody

A shopper's arm is a stable hash (SHA-256) of the experiment's name and the shopper's key
(the HMAC of the phone), so they stay in one arm across requests, worker processes and
restarts, and a new experiment (a new name) reshuffles everybody independently of the last.
Several arms may run the same variant: an A/A test, or an A/A/B test whose two control arms
show how far two identical arms drift apart by chance. Requests that name no shopper
(a product page without `shopper=`) are in no arm and get the model's answers.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from dataclasses import dataclass

from core.errors import ConfigError

VARIANTS = ("model", "popular")
BUCKETS = 10_000  # shares resolve to 0.01 %
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class ExperimentError(ConfigError):
    """The experiment's configuration cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Arm:
    name: str
    variant: str
    share: float  # percent


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]

    @classmethod
    def parse(cls, name: str, arms: str) -> Experiment | None:
        """The experiment of settings `experiment.name` and `experiment.arms`; None when no
        name is set. ExperimentError says what is wrong and how to write it."""
        name = name.strip()
        if not name:
            return None
        how = ('write experiment.arms as "arm:variant:share, ..." with shares summing to '
               f'100 and variants among {", ".join(VARIANTS)}, e.g. '
               '"control:model:50, popular:popular:50"')
        if not _NAME.match(name):
            raise ExperimentError(f"experiment.name {name!r}: letters, digits, '.', '_' and "
                                  "'-' only, at most 64")
        parsed = []
        for part in (p.strip() for p in arms.split(",")):
            fields = [f.strip() for f in part.split(":")]
            if len(fields) != 3:
                raise ExperimentError(f"experiment.arms: {part!r} is not arm:variant:share; "
                                      + how)
            arm, variant, share = fields
            try:
                value = float(share)
            except ValueError:
                raise ExperimentError(f"experiment.arms: share {share!r} of arm {arm!r} is "
                                      "not a number; " + how) from None
            if not _NAME.match(arm) or variant not in VARIANTS or not 0 < value <= 100:
                raise ExperimentError(f"experiment.arms: {part!r}: " + how)
            parsed.append(Arm(arm, variant, value))
        if len(parsed) < 2 or len({a.name for a in parsed}) != len(parsed):
            raise ExperimentError("experiment.arms: at least two arms, each named once; " + how)
        if abs(sum(a.share for a in parsed) - 100) > 1e-6:
            raise ExperimentError(f"experiment.arms: shares sum to "
                                  f"{sum(a.share for a in parsed):g}, not 100; " + how)
        return cls(name, tuple(parsed))

    def __post_init__(self):
        totals = itertools.accumulate(arm.share for arm in self.arms)
        object.__setattr__(self, "_bounds", tuple(round(t * BUCKETS / 100) for t in totals))

    def bucket(self, shopper_key: str) -> int:
        digest = hashlib.sha256(f"{self.name}\x00{shopper_key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % BUCKETS

    def assign(self, shopper_key: str) -> Arm:
        """The shopper's arm: the same for the same experiment name and key, everywhere."""
        # the first arm whose bound lies above the bucket (the last when rounding fell short)
        at = bisect.bisect_right(self._bounds, self.bucket(shopper_key))
        return self.arms[min(at, len(self.arms) - 1)]

    @property
    def control(self) -> Arm:
        """The arm every other arm is compared with: the first."""
        return self.arms[0]
