import math

import pytest
import torch

from llm_srec.evaluation.metrics import (
    FULL_CATALOG,
    RankingMetrics,
    hit_rate_at_k,
    ndcg_at_k,
    random_ranker_expectation,
    sampled_protocol,
    target_ranks,
)


def test_ranks_hand_computed():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [2.0, 2.0, 2.0]])
    assert target_ranks(scores).tolist() == [0, 2, 2]
    assert target_ranks(scores, torch.tensor([1, 1, 0])).tolist() == [2, 0, 2]


def test_ties_count_against_target_and_excluded_items_never_count():
    scores = torch.tensor([[1.0, 1.0, float("-inf"), 0.5]])
    assert target_ranks(scores).tolist() == [1]
    constant = torch.zeros(4, 100)
    metrics = RankingMetrics(FULL_CATALOG)
    metrics.update(target_ranks(constant), range(4))
    assert metrics.compute()["HR@20"] == 0.0


def test_ndcg_and_hr_values():
    ranks = torch.tensor([0, 1, 9, 10, 25])
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])
    assert hit_rate_at_k(ranks, 10).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    metrics = RankingMetrics(sampled_protocol(99, 0))
    metrics.update(ranks, [5, 6, 7, 8, 9])
    result = metrics.compute()
    assert result["HR@10"] == pytest.approx(0.6)
    assert result["HR@20"] == pytest.approx(0.8)
    assert result["NDCG@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11) + 1 / math.log2(12)) / 5)
    assert result["num_users"] == 5


def test_k_larger_than_candidates():
    scores = torch.tensor([[0.0, 1.0, 2.0]])
    metrics = RankingMetrics(sampled_protocol(2, 0), ks=(10,))
    metrics.update(target_ranks(scores), [0])
    assert metrics.compute()["HR@10"] == 1.0
    assert metrics.compute()["NDCG@10"] == pytest.approx(0.5)
    assert random_ranker_expectation(3, 10)["HR@10"] == 1.0


def test_duplicate_users_counted_once_and_conflicts_rejected():
    metrics = RankingMetrics(FULL_CATALOG)
    metrics.update(torch.tensor([0, 3]), [1, 2])
    metrics.update(torch.tensor([3]), [2])
    assert metrics.num_users == 2
    with pytest.raises(ValueError, match="ranked twice"):
        metrics.update(torch.tensor([4]), [2])


def test_merge_equals_single_pass():
    ranks = torch.tensor([0, 5, 12, 40])
    whole = RankingMetrics(FULL_CATALOG)
    whole.update(ranks, range(4))
    left, right = RankingMetrics(FULL_CATALOG), RankingMetrics(FULL_CATALOG)
    left.update(ranks[:2], [0, 1])
    right.update(ranks[1:], [1, 2, 3])
    assert left.merge(right).compute() == whole.compute()


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="excluded"):
        target_ranks(torch.tensor([[float("-inf"), 1.0]]))
    with pytest.raises(ValueError, match="no users"):
        RankingMetrics(FULL_CATALOG).compute()
    with pytest.raises(ValueError, match="batch, candidates"):
        target_ranks(torch.zeros(3))


def test_result_does_not_depend_on_merge_order():
    ranks = torch.randint(0, 100, (500,), generator=torch.Generator().manual_seed(0))
    forward, backward = RankingMetrics(FULL_CATALOG), RankingMetrics(FULL_CATALOG)
    forward.update(ranks, range(500))
    backward.update(ranks.flip(0), range(499, -1, -1))
    assert forward.compute() == backward.compute()
