"""Split a padded batch of prompts into groups of similar length, so the backbone runs on less padding.

Why: a training batch holds users with 3 and with 10 shown items, and every prompt is padded to the longest, so a
large share of the backbone's work (and, through attention, more than a linear share) is padding. Running rows of
similar length together, each group trimmed to its own longest prompt, gives every row the same output (padding is
masked) for less work. A group costs one more backbone call, so a split is made only where it saves more padded
tokens than a fixed share of the whole batch's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SPLIT_COST_SHARE = 0.05  # one more backbone call must save 5% of the unsplit batch's padded tokens


def length_groups(lengths: Sequence[int], split_cost_share: float = SPLIT_COST_SHARE) -> list[list[int]]:
    """Row indices grouped by length (shortest group first) minimising padded tokens plus a cost per group.

    Exact dynamic programme over the rows sorted by length: cost(group) = rows x longest + ``split_cost_share`` x
    (the unsplit batch's rows x longest). Ties keep the original order, so the grouping is deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda row: (lengths[row], row))
    if len(order) < 2:
        return [order]
    sorted_lengths = [lengths[row] for row in order]
    penalty = split_cost_share * len(order) * sorted_lengths[-1]
    best = [0.0] + [float("inf")] * len(order)
    start_of = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sorted_lengths[end - 1] + penalty
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[start_of[end]:end])
        end = start_of[end]
    return groups[::-1]


def length_groups_with_columns(attention_mask: torch.Tensor) -> list[tuple[list[int], slice]]:
    """`length_groups` of a padded batch, each with the columns its rows' real tokens span (the padding is one
    contiguous side, so trimming to them keeps every real token of the group)."""
    groups = []
    for rows in length_groups(attention_mask.sum(-1).tolist()):
        columns = attention_mask[rows].any(0).nonzero().flatten().tolist()
        groups.append((rows, slice(columns[0], columns[-1] + 1)))
    return groups


__all__ = ["SPLIT_COST_SHARE", "length_groups", "length_groups_with_columns"]
