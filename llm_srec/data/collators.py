"""Batch collators: `SASRecCollator` (teacher pre-training) and `LLMSRecCollator` (LLM-SRec training batches with
exactly the keys of DESIGN.md's table).

Why collators hold the negative sampling: negatives must change every epoch yet be reproducible, so each row's
negatives come from `user_rng(seed, user_index, epoch[, position])` and `set_epoch` moves to the next epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from .sampling import sample_negatives, user_rng
from .transforms import POSITION


def left_pad(sequences: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """(B, length) long tensor: the last `length` ids of each sequence, right-aligned, 0-padded on the left."""
    batch = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        kept = list(sequence)[-length:] if length else []
        if kept:
            batch[row, length - len(kept):] = torch.as_tensor(kept, dtype=torch.long)
    return batch


def user_prompt_lengths(
    processor: Any,
    histories: Sequence[Sequence[int]],
    timestamps: Sequence[Sequence[int] | None] | None = None,
    batch_size: int = 1024,
) -> list[int]:
    """Token length of each user prompt as ``processor(histories, timestamps)`` renders it (after its token-budget
    truncation), the key that length-grouped batching sorts on. Empty timestamp lists render without times, as in
    `LLMSRecCollator` and `LLMSRecEncoder`."""
    if timestamps is not None and len(timestamps) != len(histories):
        raise ValueError(f"Got {len(timestamps)} timestamps for {len(histories)} histories.")
    lengths: list[int] = []
    for start in range(0, len(histories), batch_size):
        chunk = [list(history) for history in histories[start : start + batch_size]]
        times = None if timestamps is None else [list(t or []) or None for t in timestamps[start : start + batch_size]]
        masks = processor(chunk, timestamps=times, return_tensors=None)["attention_mask"]
        lengths.extend(int(sum(mask)) for mask in masks)
    return lengths


class _EpochSeeded:
    """The seed/epoch state shared by both collators."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s negatives from now on (call at the start of every epoch)."""
        self.epoch = int(epoch)

    def _rng(self, feature: dict[str, Any]) -> np.random.Generator:
        if POSITION in feature:
            return user_rng(self.seed, feature["user_index"], self.epoch, feature[POSITION])
        return user_rng(self.seed, feature["user_index"], self.epoch)


class SASRecCollator(_EpochSeeded):
    """Train-split rows -> SASRec pre-training batch (PAPER.md §4.4).

    For a training sequence t = history + [target]: `input_ids` = t[:-1], `positive_ids` = t[1:] (aligned), and
    `negative_ids` = one item per non-padded position not in t (drawn with replacement), all left-padded to
    `maxlen` (the last `maxlen` positions are kept).
    """

    def __init__(self, num_items: int, maxlen: int = 128, seed: int = 0) -> None:
        super().__init__(seed)
        if maxlen < 1 or num_items < 2:
            raise ValueError(f"need maxlen >= 1 and num_items >= 2, got {maxlen}, {num_items}")
        self.num_items = int(num_items)
        self.maxlen = int(maxlen)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        inputs, positives, negatives = [], [], []
        for feature in features:
            sequence = [*feature["history"], feature["target"]]
            inputs.append(sequence[:-1])
            positives.append(sequence[1:])
            count = min(len(sequence) - 1, self.maxlen)
            negatives.append(sample_negatives(self.num_items, sequence, count, self._rng(feature), replace=True))
        return {
            "input_ids": left_pad(inputs, self.maxlen),
            "positive_ids": left_pad(positives, self.maxlen),
            "negative_ids": left_pad(negatives, self.maxlen),
        }


class LLMSRecCollator(_EpochSeeded):
    """Split rows -> an LLM-SRec batch: user prompts, teacher input, and target + `num_negatives` candidates.

    Keys: `input_ids`, `attention_mask`, `history_item_ids` (from `processor(...)`), `sasrec_input_ids` (full
    history, last `sasrec_maxlen` items, left-padded), `candidate_input_ids`/`candidate_attention_mask` (B*C item
    prompts from `processor.encode_items`), `candidate_item_ids` (B, C) with the target in column 0, `labels` (B,)
    zeros. Negatives avoid the row's history and target and, when given, `known_items[user_index]` (e.g.
    `RecommendationData.sequences("train")`, to also avoid later items of all-positions examples).

    With a ``teacher`` and ``num_teacher_negatives`` > 0, each row also gets the teacher's highest-scored items among
    those it may use as negatives (after the random ones): the hard negatives a full-catalog ranking must order, so
    score distillation sees where the teacher puts them. The teacher runs here, on CPU, without gradients.
    """

    def __init__(
        self,
        processor: Any,
        sasrec_maxlen: int = 128,
        num_negatives: int = 3,
        seed: int = 0,
        known_items: Sequence[np.ndarray] | None = None,
        teacher: Any = None,
        num_teacher_negatives: int = 0,
    ) -> None:
        super().__init__(seed)
        if processor.item_catalog is None:
            raise ValueError("the processor needs an item catalog (processor.item_catalog = data.catalog)")
        if sasrec_maxlen < 1 or num_negatives < 0:
            raise ValueError(f"need sasrec_maxlen >= 1 and num_negatives >= 0, got {sasrec_maxlen}, {num_negatives}")
        self.processor = processor
        self.num_items = len(processor.item_catalog)
        self.sasrec_maxlen = int(sasrec_maxlen)
        self.num_negatives = int(num_negatives)
        self.known_items = known_items
        if num_teacher_negatives < 0 or (num_teacher_negatives > 0 and teacher is None):
            raise ValueError(f"num_teacher_negatives={num_teacher_negatives} needs a teacher and must be >= 0")
        self.teacher = teacher
        self.num_teacher_negatives = int(num_teacher_negatives)

    def prompt_lengths(self, rows: Dataset) -> list[int]:
        """Token length of each row's user prompt as `__call__` renders it (``rows``: a split with ``history`` and
        ``history_timestamps``), e.g. the lengths of length-grouped training batches."""
        columns = rows.select_columns(["history", "history_timestamps"])[:]
        return user_prompt_lengths(self.processor, columns["history"], columns["history_timestamps"])

    def _exclude(self, feature: dict[str, Any]) -> np.ndarray:
        own = np.asarray([*feature["history"], feature["target"]], dtype=np.int64)
        if self.known_items is None:
            return own
        return np.concatenate([own, np.asarray(self.known_items[feature["user_index"]], dtype=np.int64)])

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        histories = [list(feature["history"]) for feature in features]
        timestamps = [list(feature["history_timestamps"]) or None for feature in features]
        users = self.processor(histories, timestamps=timestamps, return_tensors="pt")
        candidates = np.stack([
            np.concatenate([
                [feature["target"]],
                sample_negatives(self.num_items, self._exclude(feature), self.num_negatives, self._rng(feature)),
            ])
            for feature in features
        ]).astype(np.int64)
        if self.num_teacher_negatives:
            candidates = np.concatenate([candidates, self._teacher_negatives(features, candidates)], axis=1)
        items = self.processor.encode_items(candidates.reshape(-1).tolist(), return_tensors="pt")
        return {
            "input_ids": users["input_ids"],
            "attention_mask": users["attention_mask"],
            "history_item_ids": users["history_item_ids"],
            "sasrec_input_ids": left_pad(histories, self.sasrec_maxlen),
            "candidate_input_ids": items["input_ids"],
            "candidate_attention_mask": items["attention_mask"],
            "candidate_item_ids": torch.as_tensor(candidates, dtype=torch.long),
            "labels": torch.zeros(len(features), dtype=torch.long),
        }

    @torch.no_grad()
    def _teacher_negatives(self, features: list[dict[str, Any]], candidates: np.ndarray) -> np.ndarray:
        """(B, num_teacher_negatives): per row, the teacher's top-scored items outside its exclusions and candidates."""
        histories = left_pad([list(feature["history"]) for feature in features], self.sasrec_maxlen)
        scores = self.teacher.score(histories)  # (B, num_items + 1), column 0 is -inf
        for row, feature in enumerate(features):
            scores[row, torch.as_tensor(np.concatenate([self._exclude(feature), candidates[row]]))] = float("-inf")
        return scores.topk(self.num_teacher_negatives, dim=-1).indices.numpy().astype(np.int64)
