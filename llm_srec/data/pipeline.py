"""`build_recommendation_data`: raw interactions from any source -> `RecommendationData`, in a fixed order of steps.

Why fixed: the order (sample users -> sort by time -> deduplicate -> filter -> re-index -> split -> titles) decides
the result, so it lives in one function whose parameters are recorded in `info`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm_srec.modeling.catalog_llm_srec import ItemCatalog

from .processing import (
    DedupPolicy,
    FilterMode,
    ItemOrder,
    apply_filter,
    deduplicate,
    index_items,
    order_chronologically,
    sample_users,
)
from .raw import RawInteractions
from .recommendation_data import RecommendationData
from .report import DropReport
from .splitting import leave_last_out, sequences_dataset
from .titles import DEFAULT_MISSING_TITLE, resolve_titles


def build_recommendation_data(
    raw: RawInteractions,
    *,
    dedup: DedupPolicy = "exact",
    filter_mode: FilterMode = "none",
    min_user_interactions: int = 5,
    min_item_interactions: int = 5,
    sample_rate: float = 1.0,
    seed: int = 0,
    item_order: ItemOrder = "appearance",
    missing_title: str = DEFAULT_MISSING_TITLE,
) -> RecommendationData:
    """Process `raw` into leave-last-out splits and a catalog; every drop/change is in the result's drop report.

    `filter_mode`: "none", "kcore" (iterated; `min_user_interactions`/`min_item_interactions`) or "paper" (the official
    single-pass filter with k = `min_user_interactions`). `sample_rate`/`seed`: user sub-sampling before filtering
    (Amazon paper setting). Users are indexed 0.. in order of first appearance in the source; items per `item_order`.
    """
    report = DropReport(list(raw.report.entries))
    frame = raw.frame
    if frame.empty:
        raise ValueError(f"{raw.name}: no interactions to process")
    has_timestamps = raw.has_timestamps
    frame = sample_users(frame, sample_rate, seed, report)
    frame = order_chronologically(frame, report)
    frame = deduplicate(frame, dedup, report)
    frame = apply_filter(frame, filter_mode, min_user_interactions, min_item_interactions, report)
    if frame.empty:
        raise ValueError(f"{raw.name}: every user was removed: {_removals(report)}")
    frame = frame.drop(columns=[c for c in frame.columns if c not in ("user", "item", "timestamp")])

    # rows are grouped by user in first-appearance order (order_chronologically), so lengths follow user order
    user_ids, lengths = _run_lengths(frame["user"].to_numpy())
    item_ids, external_ids = index_items(frame, item_order)
    timestamps = frame["timestamp"].to_numpy(np.int64) if has_timestamps else None
    sequences = sequences_dataset(user_ids, lengths, item_ids, timestamps)
    splits = leave_last_out(user_ids, lengths, item_ids, timestamps, report)
    if not len(splits["test"]):
        raise ValueError(
            f"{raw.name}: no split rows: {len(user_ids):,} users and {len(external_ids):,} items are left, and none "
            f"of the users has the 2 interactions a test row needs; {_removals(report)}"
        )
    titles = resolve_titles(external_ids, raw.titles, report, missing_title, raw.name)
    info: dict[str, Any] = {
        "name": raw.name,
        "has_timestamps": has_timestamps,
        "preprocessing": {
            "dedup": dedup, "filter": filter_mode, "min_user_interactions": min_user_interactions,
            "min_item_interactions": min_item_interactions, "sample_rate": sample_rate, "seed": seed,
            "item_order": item_order, "missing_title": missing_title,
        },
    }
    return RecommendationData(splits, sequences, ItemCatalog(external_ids, titles), report, info)


def _removals(report: DropReport) -> str:
    """One line saying which steps dropped what, for the errors of a dataset left without rows."""
    dropped = [f"{e.stage} / {e.reason}: {e.count:,} {e.unit}" for e in report.entries if e.kind == "dropped"]
    if not dropped:
        return "nothing was dropped, so the source itself holds one interaction per user (check the user column)"
    return "dropped by " + "; ".join(dropped) + " (loosen the filter, the sampling or the deduplication)"


def _run_lengths(users: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Distinct users in order and the length of each one's contiguous block of rows."""
    boundaries = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], boundaries])
    lengths = np.diff(np.concatenate([starts, [len(users)]]))
    ids = [str(u) for u in users[starts]]
    if len(set(ids)) != len(ids):
        raise AssertionError("rows of a user are not contiguous after ordering")
    return ids, lengths.astype(np.int64)
