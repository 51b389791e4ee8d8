"""The common output of every source: interactions in file order plus raw item titles.

Why one type: every source (Amazon, RecBole, MovieLens, SASRec text, tabular, synthetic) hands the same table to one
processing pipeline, so deduplication, ordering, filtering and splitting are implemented and tested once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .report import DropReport

NO_TIMESTAMP = -1
SPLIT_ORDER = ("train", "valid", "test")


@dataclass
class RawInteractions:
    """Interactions as read, before any processing.

    `frame` has one row per interaction, in file order, with columns `user` (str), `item` (str) and `timestamp`
    (int64 unix seconds, `NO_TIMESTAMP` when the source has no time), and optionally `split` (one of
    `SPLIT_ORDER`) when the source ships a split that the paper's single-pass filter needs (Amazon 2023).
    `titles` maps external item id -> raw title (None or missing = no metadata); `titles is None` means the
    source has no titles at all. `report` holds what the reader already skipped. `time_is_order`: the timestamps are
    positions or sequence numbers (not unix seconds) that only order each user's interactions, so they are not kept
    as times (no prompt shows them as 1970 dates).
    """

    frame: pd.DataFrame
    titles: pd.Series | None
    name: str
    report: DropReport = field(default_factory=DropReport)
    time_is_order: bool = False

    def __post_init__(self) -> None:
        missing = {"user", "item", "timestamp"} - set(self.frame.columns)
        if missing:
            raise ValueError(f"{self.name}: interaction table lacks columns {sorted(missing)}")
        if self.frame["timestamp"].dtype != np.int64:
            raise ValueError(f"{self.name}: timestamp column must be int64, got {self.frame['timestamp'].dtype}")
        if "split" in self.frame.columns and not self.frame["split"].isin(SPLIT_ORDER).all():
            raise ValueError(f"{self.name}: split column must only hold {SPLIT_ORDER}")

    @property
    def has_timestamps(self) -> bool:
        """True when every interaction has a real time; mixed known/unknown times are rejected by the pipeline."""
        return (not self.time_is_order and bool(len(self.frame))
                and bool((self.frame["timestamp"].to_numpy() != NO_TIMESTAMP).all()))
