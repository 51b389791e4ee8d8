"""Dataset transforms for training variants: all-positions expansion (App. E.3) and the once-shuffled histories of
the sequence probes (PAPER.md §7).

Why transforms, not collator logic: both change WHICH examples exist, so they are applied once to a split (Arrow,
vectorised, content-fingerprinted) and any collator then handles the resulting rows unchanged.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from datasets import Dataset

from .raw import NO_TIMESTAMP
from .sampling import user_rng
from .splitting import SPLIT_SCHEMA, dataset_from_table, list_array

POSITION = "position"  # index of an all-positions example's target in the user's training sequence


def _lists(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Flat values and offsets of a list column."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy(zero_copy_only=False)
    return values[offsets[0]:offsets[-1]], offsets - offsets[0]


def expand_all_positions(train: Dataset, max_history: int | None = 128) -> Dataset:
    """One example per position of each training sequence t = history + [target]: (t[:k], t[k]) for k >= 1.

    Histories keep their last `max_history` items (None: all; quadratic in the sequence length), which covers
    both the prompt (last 10) and the SASRec teacher (maxlen 128). Adds an int64 `position` column (= k), which
    the collator adds to the negative-sampling key so that a user's examples get different negatives.
    """
    table = train.with_format("arrow")[:]
    items, item_offsets = _lists(table["history"])
    targets = table["target"].to_numpy()
    lengths = np.diff(item_offsets) + 1  # training-sequence lengths
    starts = item_offsets[:-1] + np.arange(len(lengths))  # starts in the flat training-sequence array
    sequences = np.insert(items, item_offsets[1:], targets).astype(np.int32)
    times, _ = _lists(table["history_timestamps"])
    timed = len(times) > 0
    sequence_times = np.insert(times, item_offsets[1:], table["target_timestamp"].to_numpy()).astype(np.int64) \
        if timed else np.zeros(0, np.int64)

    example_user = np.repeat(np.arange(len(lengths)), lengths - 1)
    position = np.arange(len(example_user)) - np.repeat(np.cumsum(lengths - 1) - (lengths - 1), lengths - 1) + 1
    history_lengths = position if max_history is None else np.minimum(position, max_history)
    history_starts = starts[example_user] + position - history_lengths
    example_starts = np.repeat(np.cumsum(history_lengths) - history_lengths, history_lengths)
    gather = np.repeat(history_starts, history_lengths) + np.arange(int(history_lengths.sum())) - example_starts
    target_at = starts[example_user] + position

    schema = SPLIT_SCHEMA.append(pa.field(POSITION, pa.int64()))
    no_times = np.zeros(len(example_user), dtype=np.int64)
    expanded = pa.table(
        [
            table["user_id"].take(pa.array(example_user)),
            table["user_index"].take(pa.array(example_user)),
            list_array(sequences[gather], history_lengths, pa.int32()),
            list_array(sequence_times[gather], history_lengths, pa.int64()) if timed
            else list_array(np.zeros(0, np.int64), no_times, pa.int64()),
            pa.array(sequences[target_at], pa.int32()),
            pa.array(sequence_times[target_at] if timed else np.full(len(example_user), NO_TIMESTAMP, np.int64),
                     pa.int64()),
            pa.array(position.astype(np.int64), pa.int64()),
        ],
        schema=schema,
    )
    return dataset_from_table(expanded)


def shuffle_histories(split: Dataset, seed: int) -> Dataset:
    """Each row's `history` permuted once with `user_rng(seed, user_index)`; targets and `history_timestamps`
    stay in place, so in a prompt only titles/embeddings move while "Item No." and times keep their slots.

    Apply it to the train split BEFORE `expand_all_positions` to shuffle each training sequence once (PAPER.md §7).
    """
    table = split.with_format("arrow")[:]
    items, offsets = _lists(table["history"])
    users = table["user_index"].to_numpy()
    permuted = np.empty_like(items)
    for row, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        permuted[start:end] = items[start:end][user_rng(seed, users[row]).permutation(end - start)]
    history = list_array(permuted.astype(np.int32), np.diff(offsets), pa.int32())
    shuffled = table.set_column(table.schema.get_field_index("history"), "history", history)
    return dataset_from_table(shuffled)
