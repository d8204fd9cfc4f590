"""What a night publishes: the candidate the holdout supports, beyond its noise.

Shops differ more than any fixed blend allows: on one, shoppers re-buy what they bought
(supplies, groceries) and the repeat signal rules; on another nobody buys a title twice
(books, media); on a seasonal shop this month's best sellers beat any taste model; on a
sparse one ALS has too little to learn from. So each night measures, on the holdout, a few
candidates, all blends of the components of models/hybrid.py (whichever wins is published
by the same code that measured it):

    hybrid              the configured (or tuned) blend
    als                 ALS alone
    item_knn            the item-kNN alone
    recent_popularity   the goods sold most in the last `trending_days` (trending alone)
    latest_popularity   the same, each order counting half as much every
                        `trending_half_life` days: what sells this week (recent alone)

each at every `rebuy` of REBUY_GRID: how much a goods the shopper already bought may be
recommended again. `rebuy` only changes the list of all purchases, and is calibrated per
candidate: the best metric on all purchases, the lowest `rebuy` among equals (bought goods
that earned no extra hit are not recommended again: a shop nobody re-buys in ties them all).

Then the candidate with the best gate metric (`gate.metric` in `gate.mode`, MAP@10 on all
purchases by default) is published when it beats the configured blend beyond the
holdout's noise: a paired bootstrap over the test shoppers (BOOTSTRAP resamples of the
shoppers, seeded) of the mean difference between the two; the winner is published only
when the 95% interval lies above zero. Otherwise the configured blend stays. The choice,
every candidate's figure and the interval go into metrics.json ("selection").
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

DEFAULT = "hybrid"
CANDIDATES = (DEFAULT, "als", "item_knn", "recent_popularity", "latest_popularity")
REBUY_GRID = (1.0, 0.5, 0.25, 0.0)
BOOTSTRAP = 2000
CONFIDENCE = 0.95
_ALONE = {"als": "als", "item_knn": "items", "recent_popularity": "trending",
          "latest_popularity": "recent"}


def weights(name: str, params) -> dict[str, float]:
    """The blend of candidate `name` (params: the configured hybrid.HybridParams)."""
    if name == DEFAULT:
        return params.weights()
    if name not in _ALONE:
        raise ValueError(f"unknown candidate {name!r}: one of {', '.join(CANDIDATES)}")
    return {_ALONE[name]: 1.0, "rebuy": params.rebuy}


def variant(name: str, rebuy: float) -> str:
    """A candidate's name in an evaluation, at this `rebuy`."""
    return f"{name}@rebuy={rebuy:g}"


def blends(params, rebuys: tuple[float, ...] = REBUY_GRID) -> dict[str, dict[str, float]]:
    """Every candidate at every rebuy (and the configured one), for hybrid.recommend."""
    return {variant(name, rebuy): {**weights(name, params), "rebuy": rebuy}
            for name in CANDIDATES for rebuy in dict.fromkeys((params.rebuy, *rebuys))}


def bootstrap_intervals(samples: list[np.ndarray], resamples: int = BOOTSTRAP,
                        confidence: float = CONFIDENCE, seed: int = 0
                        ) -> list[tuple[float, float]]:
    """The `confidence` interval of the mean of each of `samples` (one value per shopper,
    the same shoppers in each), from one set of resamples of the shoppers with
    replacement: drawn once, however many candidates are measured."""
    size = len(samples[0]) if samples else 0
    if size == 0:
        return [(0.0, 0.0)] * len(samples)
    picks = np.random.default_rng(seed).integers(size, size=(resamples, size))
    tail = (1 - confidence) / 2 * 100
    out = []
    for values in samples:
        means = values[picks].mean(axis=1)
        out.append((float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))))
    return out


def bootstrap_interval(differences: np.ndarray, resamples: int = BOOTSTRAP,
                       confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """The `confidence` interval of the mean of `differences` (one per shopper), by
    resampling the shoppers with replacement."""
    return bootstrap_intervals([differences], resamples, confidence, seed)[0]


def choose(result: dict, per_shopper: dict[str, np.ndarray], params, metric: str = "map",
           mode: str = "all", k: int = 10) -> tuple[dict, dict]:
    """(models, selection) from `result` ({variant: {mode: metrics}}, as evaluation.
    evaluate_paired measures blends()) and each variant's `metric` in `mode` per shopper:
    `models` holds each candidate at its calibrated rebuy under the candidate's name (and
    whatever else `result` measured), `selection` what is published and why."""
    def score(name: str, rebuy: float, in_mode: str) -> float:
        return result[variant(name, rebuy)][in_mode][metric]

    rebuys = [r for r in dict.fromkeys((params.rebuy, *REBUY_GRID))
              if variant(DEFAULT, r) in result]
    calibrated = {}
    for name in CANDIDATES:
        on_all = {r: score(name, r, "all") for r in rebuys}
        best = max(on_all.values())
        calibrated[name] = min(r for r, value in on_all.items() if value == best)
    scores = {name: score(name, calibrated[name], mode) for name in CANDIDATES}
    best = max(CANDIDATES, key=lambda name: (scores[name], name == DEFAULT))
    label = f"{metric}@{k} ({mode})"
    spreads = _spreads(per_shopper, calibrated)
    chosen, interval = DEFAULT, None
    if best != DEFAULT:
        interval = spreads[best]["difference_interval"]
        if interval[0] > 0:
            chosen = best
    if chosen != DEFAULT:
        reason = (f"{chosen} beats the configured {DEFAULT} on {label} by "
                  f"{scores[chosen] - scores[DEFAULT]:.4f} (95% interval "
                  f"{interval[0]:.4f}..{interval[1]:.4f})")
    elif best != DEFAULT:
        reason = (f"{best} leads {DEFAULT} on {label} by {scores[best] - scores[DEFAULT]:.4f}, "
                  f"within the holdout's noise (95% interval {interval[0]:.4f}.."
                  f"{interval[1]:.4f}): the configured {DEFAULT} stays")
    else:
        reason = f"the configured {DEFAULT} is best on {label}"
    log.info("publishing %s (rebuy %g): %s", chosen, calibrated[chosen], reason)
    models = {key: value for key, value in result.items() if "@rebuy=" not in key}
    models.update({name: result[variant(name, calibrated[name])] for name in CANDIDATES})
    selection = {
        "published": chosen, "rebuy": calibrated[chosen], "default": DEFAULT, "by": label,
        "margin": scores[chosen] - scores[DEFAULT],
        "interval": interval, "reason": reason,
        "candidates": {name: {"score": scores[name], "rebuy": calibrated[name],
                              **spreads[name],
                              "on_all_by_rebuy": {f"{r:g}": score(name, r, "all")
                                                  for r in rebuys}}
                       for name in CANDIDATES}}
    return models, selection


def _spreads(per_shopper: dict[str, np.ndarray], calibrated: dict) -> dict[str, dict]:
    """Per candidate: its 95% interval (bootstrap over the test shoppers) and, beside the
    configured blend, its paired difference and that difference's interval; {} for a
    candidate without per-shopper figures."""
    base = per_shopper.get(variant(DEFAULT, calibrated[DEFAULT]))
    samples, slots = [], []
    for name in CANDIDATES:
        mine = per_shopper.get(variant(name, calibrated[name]))
        if mine is None:
            continue
        samples.append(mine)
        slots.append((name, "interval"))
        if name != DEFAULT and base is not None:
            samples.append(mine - base)
            slots.append((name, "difference_interval"))
    out: dict[str, dict] = {name: {} for name in CANDIDATES}
    for (name, key), values, interval in zip(slots, samples, bootstrap_intervals(samples)):
        out[name][key] = list(interval)
        if key == "difference_interval":
            out[name]["difference"] = float(values.mean())
    return out


def published_blend(selection: dict | None, params) -> tuple[str, dict[str, float]]:
    """(name, blend) a night publishes: the selection's, or the configured hybrid when the
    holdout chose nothing (no evaluation)."""
    if not selection:
        return DEFAULT, params.weights()
    name = selection["published"]
    return name, {**weights(name, params), "rebuy": selection["rebuy"]}
