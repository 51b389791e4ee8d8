"""Seeded negative sampling shared by the collators (training) and evaluation (1 + 99 candidates).

Why per-user generators: a negative depends only on (seed, user_index[, epoch[, position]]), never on batch
composition, worker count or call order, so runs are reproducible across batch sizes and processes (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def user_rng(seed: int, user_index: int, *extra: int) -> np.random.Generator:
    """`default_rng([seed, user_index, *extra])`: evaluation uses no extra key, training adds the epoch (and the
    target position for all-positions examples)."""
    return np.random.default_rng([int(seed), int(user_index), *(int(value) for value in extra)])


def sample_negatives(
    num_items: int,
    exclude: Iterable[int] | np.ndarray,
    n: int,
    rng: np.random.Generator,
    replace: bool = False,
) -> np.ndarray:
    """`n` item ids from 1..num_items that are not in `exclude`, uniformly; distinct unless `replace`.

    Sparse exclusion uses vectorised rejection sampling; when most items are excluded it draws from the explicit
    complement. Raises ValueError when fewer than `n` (or, with `replace`, zero) items are available.
    """
    if n < 0 or num_items < 1:
        raise ValueError(f"need n >= 0 and num_items >= 1, got n={n}, num_items={num_items}")
    excluded = np.unique(np.fromiter(exclude, dtype=np.int64) if not isinstance(exclude, np.ndarray)
                         else exclude.astype(np.int64, copy=False))
    excluded = excluded[(excluded >= 1) & (excluded <= num_items)]
    available = num_items - len(excluded)
    if available < (1 if replace else n) and n > 0:
        raise ValueError(
            f"cannot sample {n} negatives: only {available} of {num_items} items are not interacted with by this user"
        )
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if available < 2 * n or available < num_items // 2:  # dense exclusion: sample the complement directly
        pool = np.setdiff1d(np.arange(1, num_items + 1, dtype=np.int64), excluded, assume_unique=True)
        return rng.choice(pool, size=n, replace=replace)
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < n:
        draw = rng.integers(1, num_items + 1, size=2 * n, dtype=np.int64)
        draw = draw[~np.isin(draw, excluded)]
        chosen = np.concatenate([chosen, draw])
        if not replace:
            _, first = np.unique(chosen, return_index=True)
            chosen = chosen[np.sort(first)]
    return chosen[:n]
