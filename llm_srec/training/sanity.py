"""Warnings for a run that trained but did not learn: a best validation no better than a random ranking, or a
retrieval loss that ended near its chance level.

Why: with a frozen LLM and few steps a run can finish, save a model, a card and metrics, and still rank like a coin
toss (seen on held-out data: a retrieval loss of 4.29 against chance ln 80 = 4.38 after an epoch). The log should
say so in words, not leave it to the reader to know what chance looks like.
"""

from __future__ import annotations

import math
import re

# A best validation within this factor of a random ranking's expected value counts as "no better than random".
RANDOM_MARGIN = 1.2
# A final retrieval loss above this share of ln(candidates) counts as "near chance".
CHANCE_SHARE = 0.95

_METRIC = re.compile(r"(?:^|/)(HR|NDCG)@(\d+)$")
_SAMPLED = re.compile(r"sampled\(1\+(\d+)")


def random_ranking_expectation(metric: str, num_items: int) -> float | None:
    """The expected value of ``metric`` (``"<protocol label>/HR@K"`` or ``".../NDCG@K"``) for a ranker that orders
    the candidates at random: 1 + N candidates under the sampled protocol, the whole catalog otherwise."""
    name, sampled = _METRIC.search(metric), _SAMPLED.search(metric)
    if name is None:
        return None
    candidates = int(sampled.group(1)) + 1 if sampled else num_items
    cutoff = min(int(name.group(2)), candidates)
    if name.group(1) == "HR":
        return cutoff / candidates
    return sum(1 / math.log2(rank + 1) for rank in range(1, cutoff + 1)) / candidates


def untrained_run_warnings(
    selection_metric: str, best_value: float | None, num_items: int,
    last_retrieval_loss: float | None = None, num_candidates: int | None = None,
) -> list[str]:
    """The sentences to log when a finished run ranks like chance (empty when it learnt)."""
    warnings = []
    expected = random_ranking_expectation(selection_metric, num_items)
    if best_value is not None and expected is not None and best_value <= RANDOM_MARGIN * expected:
        warnings.append(
            f"the best validation {selection_metric} ({best_value:.4f}) is no better than a random ranking "
            f"({expected:.4f}): the model did not learn to rank; train longer or with a larger learning rate"
        )
    if last_retrieval_loss is not None and num_candidates is not None and num_candidates > 1:
        chance = math.log(num_candidates)
        if last_retrieval_loss >= CHANCE_SHARE * chance:
            warnings.append(
                f"the retrieval loss ended at {last_retrieval_loss:.3f}, near its chance level ln({num_candidates}) = "
                f"{chance:.3f}: the heads have hardly learnt to tell the target from the negatives"
            )
    return warnings


__all__ = ["random_ranking_expectation", "untrained_run_warnings"]
