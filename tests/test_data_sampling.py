"""Seeded negative sampling: exclusion, distinctness, uniformity, reproducibility, errors."""

from __future__ import annotations

import numpy as np
import pytest

from llm_srec.data import sample_negatives, user_rng


@pytest.mark.parametrize("exclude_size", [0, 5, 60, 95])  # sparse (rejection) and dense (complement) paths
def test_negatives_are_distinct_in_range_and_never_excluded(exclude_size):
    rng = np.random.default_rng(0)
    exclude = rng.choice(np.arange(1, 101), size=exclude_size, replace=False)
    for trial in range(20):
        negatives = sample_negatives(100, exclude, 5, user_rng(1, trial))
        assert len(negatives) == 5 == len(set(negatives.tolist()))
        assert negatives.min() >= 1 and negatives.max() <= 100
        assert not set(negatives.tolist()) & set(exclude.tolist())


def test_exact_remaining_items_and_errors():
    assert sorted(sample_negatives(5, [1, 2, 4], 2, user_rng(0, 0)).tolist()) == [3, 5]
    with pytest.raises(ValueError, match="only 2 of 5 items"):
        sample_negatives(5, [1, 2, 4], 3, user_rng(0, 0))
    with pytest.raises(ValueError, match="only 0 of 3 items"):
        sample_negatives(3, [1, 2, 3], 1, user_rng(0, 0), replace=True)
    assert sample_negatives(3, [0, 7, 1, 1], 2, user_rng(0, 0)).tolist() != []  # padding/out-of-range ignored
    assert sample_negatives(10, [], 0, user_rng(0, 0)).tolist() == []


def test_same_key_same_negatives_other_key_other_negatives():
    exclude = [3, 9, 27]
    a = sample_negatives(1000, exclude, 99, user_rng(0, 42))
    b = sample_negatives(1000, exclude, 99, user_rng(0, 42))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, sample_negatives(1000, exclude, 99, user_rng(0, 43)))
    assert not np.array_equal(a, sample_negatives(1000, exclude, 99, user_rng(1, 42)))
    epoch0 = sample_negatives(1000, exclude, 3, user_rng(0, 42, 0))
    epoch1 = sample_negatives(1000, exclude, 3, user_rng(0, 42, 1))
    assert not np.array_equal(epoch0, epoch1)
    expected = np.random.default_rng([5, 6, 7]).integers(0, 10**9, 4)
    assert np.array_equal(user_rng(5, 6, 7).integers(0, 10**9, 4), expected)


def test_uniform_over_allowed_items():
    counts = np.zeros(11)
    for user in range(4000):
        counts[sample_negatives(10, [2, 7], 1, user_rng(0, user))] += 1
    allowed = counts[[1, 3, 4, 5, 6, 8, 9, 10]]
    assert counts[[0, 2, 7]].sum() == 0
    assert np.all(np.abs(allowed - 500) < 90)  # 4000 / 8 per item, ~4 standard deviations


def test_with_replacement_may_repeat():
    draws = sample_negatives(4, [1, 2], 50, user_rng(0, 0), replace=True)
    assert len(draws) == 50 and set(draws.tolist()) == {3, 4}
