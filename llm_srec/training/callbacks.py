"""Trainer callbacks of the recommendation trainers."""

from __future__ import annotations

import math
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class EpochSeeded(Protocol):
    def set_epoch(self, epoch: int) -> None: ...


class CollatorEpochCallback(TrainerCallback):
    """Moves a collator whose negatives are keyed by epoch (`SASRecCollator`, `LLMSRecCollator`) to the epoch that
    starts, so negatives change every epoch and a run resumed mid-epoch draws the same ones as an uninterrupted run.

    ``state.epoch`` is the fractional epoch reached so far (it ends every epoch at exactly ``epoch + 1``), so its
    floor is the index of the epoch that is starting, also when `Trainer` resumes inside one.
    """

    def __init__(self, collator: EpochSeeded) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.collator.set_epoch(math.floor(state.epoch or 0))


__all__ = ["CollatorEpochCallback"]
