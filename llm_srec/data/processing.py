"""Vectorised interaction processing: chronological ordering, deduplication, user sampling and the filters.

Why: these steps decide which interactions exist at all, so each is a small pure function over a pandas frame
(columns `user`, `item`, `timestamp`, optional `split`), uses group-bys/bincounts rather than per-row Python, and
records every dropped or reordered row in the `DropReport`.
"""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
import pandas as pd

from .raw import NO_TIMESTAMP
from .report import DropReport

DedupPolicy = Literal["none", "exact", "first", "last"]
FilterMode = Literal["none", "kcore", "paper"]
ItemOrder = Literal["appearance", "sorted"]


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes in order of first appearance, and how many distinct values there are."""
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), len(uniques)


def order_chronologically(frame: pd.DataFrame, report: DropReport) -> pd.DataFrame:
    """Group rows by user (users in order of first appearance) and sort each user's rows by time, stably.

    Without timestamps the file order is the order. Ties keep file order; rows that moved and ties are counted.
    """
    stage = "ordering"
    timestamps = frame["timestamp"].to_numpy()
    known = timestamps != NO_TIMESTAMP
    if known.any() and not known.all():
        raise ValueError(
            f"{int((~known).sum())} of {len(frame)} interactions lack a timestamp while the others have one; "
            "a source must give all or none"
        )
    user_codes, _ = _codes(frame["user"])
    position = np.arange(len(frame), dtype=np.int64)
    file_order = np.lexsort((position, user_codes))
    if not known.any():
        return frame.iloc[file_order].reset_index(drop=True)
    order = np.lexsort((position, timestamps, user_codes))
    moved = int((order != file_order).sum())
    report.add(stage, "reordered_by_timestamp", moved, "interactions", "changed",
               "rows of a user that were not in time order in the file were sorted (stable)")
    sorted_users, sorted_times = user_codes[order], timestamps[order]
    ties = int(((sorted_users[1:] == sorted_users[:-1]) & (sorted_times[1:] == sorted_times[:-1])).sum())
    report.add(stage, "timestamp_tie", ties, "interactions", "note",
               "same user and timestamp as the previous row; file order kept")
    return frame.iloc[order].reset_index(drop=True)


def deduplicate(frame: pd.DataFrame, policy: DedupPolicy, report: DropReport) -> pd.DataFrame:
    """Drop repeated (user, item) interactions by `policy`; expects chronologically ordered rows.

    "exact": the same user, item and known timestamp again (a double-recorded event). "first"/"last": keep only the
    earliest/latest interaction per (user, item). "none": keep everything. Repeats that stay are counted as a note.
    """
    stage = "deduplication"
    if policy == "none":
        drop = np.zeros(len(frame), dtype=bool)
    elif policy == "exact":
        timed = frame["timestamp"].to_numpy() != NO_TIMESTAMP
        drop = frame.duplicated(subset=["user", "item", "timestamp"], keep="first").to_numpy() & timed
    elif policy in ("first", "last"):
        drop = frame.duplicated(subset=["user", "item"], keep=policy).to_numpy()
    else:
        raise ValueError(f"unknown deduplication policy {policy!r}; choose none, exact, first or last")
    report.add(stage, f"duplicate_{policy}", int(drop.sum()), "interactions", "dropped",
               {"exact": "same user, item and timestamp as an earlier row",
                "first": "later repeat of a (user, item) pair",
                "last": "earlier repeat of a (user, item) pair"}.get(policy, ""))
    kept = frame.loc[~drop].reset_index(drop=True)
    repeats = int(kept.duplicated(subset=["user", "item"]).sum())
    report.add(stage, "repeated_user_item_kept", repeats, "interactions", "note",
               "a user interacted with the same item again; kept as a separate interaction")
    return kept


def sample_users(frame: pd.DataFrame, rate: float, seed: int, report: DropReport) -> pd.DataFrame:
    """Keep `int(num_users * rate)` users chosen by `random.Random(seed).sample` over users in first-appearance
    order, the same call the official preprocessing makes (`random.sample(users, int(N * rate))`)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"user sampling rate must be in (0, 1], got {rate}")
    if rate == 1.0:
        return frame
    users = pd.unique(frame["user"]).tolist()
    chosen = set(random.Random(seed).sample(users, int(len(users) * rate)))
    keep = frame["user"].isin(chosen).to_numpy()
    report.add("user_sampling", "user_not_sampled", len(users) - len(chosen), "users", "dropped",
               f"rate {rate}, seed {seed}")
    report.add("user_sampling", "user_not_sampled", int((~keep).sum()), "interactions", "dropped",
               f"rate {rate}, seed {seed}")
    return frame.loc[keep].reset_index(drop=True)


def _count(codes: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes, minlength=size)


def filter_kcore(frame: pd.DataFrame, min_user: int, min_item: int, report: DropReport) -> pd.DataFrame:
    """Iterated k-core: repeatedly drop users with < `min_user` and items with < `min_item` interactions."""
    stage = "kcore"
    user_codes, num_users = _codes(frame["user"])
    item_codes, num_items = _codes(frame["item"])
    alive = np.ones(len(frame), dtype=bool)
    dropped_by_user = dropped_by_item = 0
    while True:
        user_counts = _count(user_codes[alive], num_users)
        bad_user = alive & (user_counts[user_codes] < min_user)
        dropped_by_user += int(bad_user.sum())
        alive &= ~bad_user
        item_counts = _count(item_codes[alive], num_items)
        bad_item = alive & (item_counts[item_codes] < min_item)
        dropped_by_item += int(bad_item.sum())
        alive &= ~bad_item
        if not bad_user.any() and not bad_item.any():
            break
    detail = f"iterated until every user has >= {min_user} and every item >= {min_item} interactions"
    report.add(stage, "user_below_min_interactions", dropped_by_user, "interactions", "dropped", detail)
    report.add(stage, "item_below_min_interactions", dropped_by_item, "interactions", "dropped", detail)
    report.add(stage, "user_removed", num_users - len(np.unique(user_codes[alive])), "users", "dropped", detail)
    report.add(stage, "item_removed", num_items - len(np.unique(item_codes[alive])), "items", "dropped", detail)
    return frame.loc[alive].reset_index(drop=True)


def filter_paper(frame: pd.DataFrame, k: int, report: DropReport) -> pd.DataFrame:
    """The official code's single-pass filter (PAPER.md §5.2), not an iterated k-core.

    Counts are taken once on the input. Items with < k interactions are removed. A user is kept when they have >= k
    interactions and still >= k *training* interactions after the item removal (rows with `split == "train"` when
    the source ships a split, else all rows). Users can therefore end up with items of count < k, and users whose
    held-out item was removed keep their remaining sequence (counted in `heldout_item_removed`).
    """
    stage = "paper_filter"
    user_codes, num_users = _codes(frame["user"])
    item_codes, num_items = _codes(frame["item"])
    user_counts, item_counts = _count(user_codes, num_users), _count(item_codes, num_items)
    item_kept = item_counts[item_codes] >= k
    is_train = (frame["split"] == "train").to_numpy() if "split" in frame.columns else np.ones(len(frame), bool)
    train_left = _count(user_codes[item_kept & is_train], num_users)
    user_kept = (user_counts >= k) & (train_left >= k)
    keep = item_kept & user_kept[user_codes]
    detail = f"single pass, k = {k}"
    report.add(stage, "user_below_min_interactions", int((~user_kept[user_codes]).sum()), "interactions",
               "dropped", detail)
    report.add(stage, "item_below_min_interactions", int((user_kept[user_codes] & ~item_kept).sum()),
               "interactions", "dropped", detail)
    report.add(stage, "user_removed", int((~user_kept).sum()), "users", "dropped", detail)
    report.add(stage, "item_removed", num_items - len(np.unique(item_codes[keep])), "items", "dropped", detail)
    if "split" in frame.columns:
        heldout_lost = ~item_kept & user_kept[user_codes] & ~is_train
        report.add(stage, "heldout_item_removed", len(np.unique(user_codes[heldout_lost])), "users", "changed",
                   "the source's valid/test item was filtered out; leave-last-out uses the remaining sequence")
    return frame.loc[keep].reset_index(drop=True)


def apply_filter(
    frame: pd.DataFrame, mode: FilterMode, min_user: int, min_item: int, report: DropReport
) -> pd.DataFrame:
    """Dispatch on the filter mode ("paper" uses `min_user` as its single k)."""
    if mode == "none":
        return frame
    if mode == "kcore":
        return filter_kcore(frame, min_user, min_item, report)
    if mode == "paper":
        if min_user != min_item:
            raise ValueError("the paper filter uses one threshold; pass equal min_user and min_item")
        return filter_paper(frame, min_user, report)
    raise ValueError(f"unknown filter {mode!r}; choose none, kcore or paper")


def index_items(frame: pd.DataFrame, order: ItemOrder) -> tuple[np.ndarray, list[str]]:
    """Internal ids 1..N for the `item` column and the external id of each (index i-1 -> id i).

    "appearance": numbered by first appearance (users in order, each chronologically), like the official code.
    "sorted": numbered by external id, numerically when every id is an integer (keeps SASRec-file ids stable).
    """
    if order == "appearance":
        codes, uniques = pd.factorize(frame["item"], sort=False)
        return codes.astype(np.int32) + 1, [str(u) for u in uniques]
    if order == "sorted":
        uniques = pd.unique(frame["item"])
        as_text = pd.Series(uniques, dtype=str)
        numeric = as_text.str.fullmatch(r"\d+").all()
        keys = as_text.astype(np.int64) if numeric else as_text
        ordered = as_text.iloc[np.argsort(keys.to_numpy(), kind="stable")].tolist()
        mapping = pd.Series(np.arange(1, len(ordered) + 1, dtype=np.int32), index=ordered)
        return mapping.reindex(frame["item"].astype(str)).to_numpy(np.int32), ordered
    raise ValueError(f"unknown item order {order!r}; choose appearance or sorted")
