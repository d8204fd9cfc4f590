"""The ranking metrics' textbook definitions, one shopper at a time: the oracle that
models/evaluation.py's vectorized figures are checked against."""
from __future__ import annotations

import math
from collections.abc import Sequence


def precision_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    return sum(1 for item in recommended[:k] if item in relevant) / k


def recall_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in recommended[:k] if item in relevant) / len(relevant)


def average_precision_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    hits, total = 0, 0.0
    for rank, item in enumerate(recommended[:k], 1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k) if relevant else 0.0


def ndcg_at_k(recommended: Sequence, relevant: set, k: int) -> float:
    dcg = sum(1 / math.log2(rank + 1)
              for rank, item in enumerate(recommended[:k], 1) if item in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0
