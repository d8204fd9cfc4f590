"""The quality gate between training and publishing (pure Python: reads metrics.json).

A candidate passes when, on its time holdout, its metric (MAP@k, all purchases, by
default) beats the popularity baseline measured on the same holdout, and is not more than
`max_drop` (relative) below the model being served. A model without an evaluation (too
little history for a holdout) passes with a warning: the first nights of a new shop must
still publish something.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    """The candidate model is worse than the gate allows; the served version stays."""


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "map"
    mode: str = "all"
    min_ratio_over_popularity: float = 1.0  # must be strictly above popularity x this
    max_drop: float = 0.10  # at most 10% below the served model


def _score(evaluation: dict | None, model: str, policy: GatePolicy) -> float | None:
    try:
        return evaluation["models"][model][policy.mode][policy.metric]
    except (KeyError, TypeError):
        return None


def check(candidate: dict, served: dict | None, policy: GatePolicy = GatePolicy()) -> list[str]:
    """Reasons the candidate's metrics.json fails the gate (empty when it passes)."""
    evaluation = candidate.get("evaluation")
    mine = _score(evaluation, candidate.get("published_model", "als"), policy)
    name = f"{policy.metric.upper()}@{(evaluation or {}).get('k', '?')} ({policy.mode})"
    if mine is None:
        log.warning("model %s has no holdout evaluation (%s); the gate lets it through",
                    candidate.get("version"), (evaluation or {}).get("skipped", "none"))
        return []
    failures = []
    popular = _score(evaluation, "popularity", policy)
    if popular is not None and not mine > popular * policy.min_ratio_over_popularity:
        failures.append(f"{name} {mine:.4f} does not beat the popularity baseline "
                        f"{popular:.4f} x {policy.min_ratio_over_popularity}")
    before = _score((served or {}).get("evaluation"),
                    (served or {}).get("published_model", "als"), policy)
    if before is not None and mine < before * (1 - policy.max_drop):
        failures.append(f"{name} {mine:.4f} is more than {policy.max_drop:.0%} below the "
                        f"served model {served.get('version')}'s {before:.4f}")
    return failures
