"""Ranking evaluation: hand-computed ranks under both protocols, seeded candidate lists, the tie rule, equality
across batch sizes and user subsets, the SASRec and LLM-SRec encoders, and the metric-key scheme."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from llm_srec.data.sampling import sample_negatives, user_rng
from llm_srec.evaluation import (
    FULL_CATALOG,
    RankingEvaluator,
    SASRecEncoder,
    evaluate_ranking,
    flatten_metrics,
    format_metrics_table,
    nest_metrics,
    random_ranker_expectation,
    sampled_protocol,
)

NUM_ITEMS = 8


def make_split(histories: list[list[int]], targets: list[int], users: list[int] | None = None) -> Dataset:
    users = list(range(len(histories))) if users is None else users
    return Dataset.from_dict({
        "user_id": [f"u{user}" for user in users],
        "user_index": users,
        "history": histories,
        "history_timestamps": [[] for _ in histories],
        "target": targets,
        "target_timestamp": [-1 for _ in histories],
    })


class TableEncoder:
    """Items are fixed vectors; a user is the vector of a fixed `user_vectors[last history item]`."""

    embedding_size = 2
    device = torch.device("cpu")

    def __init__(self, items: torch.Tensor, users: dict[int, list[float]] | None = None) -> None:
        self.items = items
        self.users = users or {}
        self.user_calls: list[int] = []

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        return self.items[torch.as_tensor(item_ids)]

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        self.user_calls.append(len(histories))
        return torch.tensor([self.users[history[-1]] for history in histories], dtype=torch.float32)


def line_encoder() -> TableEncoder:
    """Item i scores i against the user vector (1, 0): higher id, better rank."""
    items = torch.tensor([[0.0, 0.0]] + [[float(i), 0.0] for i in range(1, NUM_ITEMS + 1)])
    return TableEncoder(items, {item: [1.0, 0.0] for item in range(1, NUM_ITEMS + 1)})


def test_full_catalog_ranks_are_hand_computed_and_exclude_the_history_but_not_the_target():
    # user 0: target 5, history {8, 2}: items above 5 are 6, 7 (8 is history) -> rank 2
    # user 1: target 8 (best item) -> rank 0; user 2: target 1, history {7} -> 6 items above -> rank 6
    # user 3: target 6 is also in its history: it stays rankable; above it: 7 (8 is history) -> rank 1
    split = make_split([[8, 2], [3], [7], [6, 8]], [5, 8, 1, 6])
    evaluator = RankingEvaluator(split, NUM_ITEMS, protocols=["full"], batch_size=3)
    results = evaluator.evaluate(line_encoder(), show_progress=False)
    ranks = np.array([2, 0, 6, 1])
    expected_ndcg10 = float(np.mean(1 / np.log2(ranks + 2)))
    assert list(results) == [FULL_CATALOG]
    assert results[FULL_CATALOG]["NDCG@10"] == pytest.approx(expected_ndcg10)
    assert results[FULL_CATALOG]["HR@10"] == 1.0
    assert results[FULL_CATALOG]["num_users"] == 4


def test_sampled_ranks_use_the_seeded_per_user_negatives():
    split = make_split([[8, 2], [3], [7]], [5, 8, 1], users=[10, 11, 12])
    evaluator = RankingEvaluator(split, NUM_ITEMS, protocols=["sampled"], num_negatives=3, seed=7, ks=(1, 2))
    for row, (user, history, target) in enumerate([(10, [8, 2], 5), (11, [3], 8), (12, [7], 1)]):
        negatives = sample_negatives(NUM_ITEMS, np.array([*history, target]), 3, user_rng(7, user))
        assert evaluator.candidates[row].tolist() == [target, *negatives.tolist()]
        assert not set(negatives.tolist()) & {*history, target}
    ranks = np.array([int((evaluator.candidates[row, 1:] > evaluator.candidates[row, 0]).sum()) for row in range(3)])
    results = evaluator.evaluate(line_encoder(), show_progress=False)[sampled_protocol(3, 7)]
    assert results["HR@1"] == pytest.approx(float(np.mean(ranks < 1)))
    assert results["NDCG@2"] == pytest.approx(float(np.mean(np.where(ranks < 2, 1 / np.log2(ranks + 2), 0))))


def test_ties_count_against_the_target_under_both_protocols():
    items = torch.ones(NUM_ITEMS + 1, 2)
    encoder = TableEncoder(items, {item: [1.0, 1.0] for item in range(1, NUM_ITEMS + 1)})
    split = make_split([[1], [2]], [3, 4])
    results = RankingEvaluator(split, NUM_ITEMS, num_negatives=5, ks=(1, 10)).evaluate(encoder, show_progress=False)
    sampled = results[sampled_protocol(5, 0)]
    assert sampled["HR@1"] == 0.0  # all 6 candidates tie: the target ranks last (5), never first
    assert sampled["HR@10"] == 1.0  # K larger than the candidate list
    assert sampled["NDCG@10"] == pytest.approx(1 / math.log2(5 + 2))
    assert results[FULL_CATALOG]["HR@1"] == 0.0
    assert results[FULL_CATALOG]["NDCG@10"] == pytest.approx(1 / math.log2(6 + 2))  # 8 items - 1 history -> rank 6


def test_candidate_lists_are_identical_across_evaluators_seeds_differ_and_subsets_keep_each_users_list():
    rng = np.random.default_rng(0)
    histories = [rng.choice(np.arange(1, 41), size=5, replace=False).tolist() for _ in range(30)]
    targets = [int(rng.integers(1, 41)) for _ in range(30)]
    split = make_split(histories, targets)
    first = RankingEvaluator(split, 40, num_negatives=20, seed=3).candidates
    again = RankingEvaluator(split, 40, num_negatives=20, seed=3, batch_size=1).candidates
    other = RankingEvaluator(split, 40, num_negatives=20, seed=4).candidates
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    subset = RankingEvaluator(split, 40, num_negatives=20, seed=3, max_users=10)
    assert subset.num_users == 10 and len(set(subset.user_index.tolist())) == 10
    np.testing.assert_array_equal(subset.candidates, first[subset.user_index])
    assert subset.user_index.tolist() == RankingEvaluator(split, 40, seed=3, max_users=10).user_index.tolist()


def test_users_and_items_are_scored_in_fixed_batches(tiny_sasrec):
    split = make_split([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [11]], [4, 6, 7, 11, 12])
    results = [
        evaluate_ranking(tiny_sasrec, split, 16, num_negatives=5, batch_size=size, show_progress=False)
        for size in (1, 2, 64)
    ]
    assert results[0] == results[1] == results[2]
    encoder = line_encoder()
    RankingEvaluator(make_split([[1]] * 5, [2, 3, 4, 5, 6], users=[0, 1, 2, 3, 4]), NUM_ITEMS, batch_size=2,
                     num_negatives=2).evaluate(encoder, show_progress=False)
    assert encoder.user_calls == [2, 2, 1]


def test_sasrec_encoder_ranks_like_the_models_own_scores(tiny_sasrec):
    split = make_split([[1, 2, 3], [4, 5], [9, 6], [7, 8, 9, 10]], [4, 6, 7, 11])
    evaluator = RankingEvaluator(split, 16, num_negatives=6, ks=(1, 3))
    results = evaluator.evaluate(SASRecEncoder(tiny_sasrec), show_progress=False)
    histories = torch.tensor([[0, 1, 2, 3], [0, 0, 4, 5], [0, 0, 9, 6], [7, 8, 9, 10]])
    with torch.no_grad():
        sampled = tiny_sasrec.score(histories, torch.as_tensor(evaluator.candidates))
        full = tiny_sasrec.score(histories)
    sampled_ranks = (sampled >= sampled[:, :1]).sum(1) - 1
    for row, history in enumerate(split["history"]):
        target = split["target"][row]
        full[row, [item for item in history if item != target]] = float("-inf")
    targets = torch.tensor(split["target"])
    full_ranks = (full >= full.gather(1, targets[:, None])).sum(1) - 1
    assert results[sampled_protocol(6, 0)]["HR@3"] == pytest.approx((sampled_ranks < 3).float().mean().item())
    assert results[FULL_CATALOG]["HR@3"] == pytest.approx((full_ranks < 3).float().mean().item())
    assert results[FULL_CATALOG]["HR@1"] == pytest.approx((full_ranks < 1).float().mean().item())
    assert tiny_sasrec.training is False


def test_llm_srec_evaluation_matches_a_direct_computation_and_restores_training_mode(tiny_model):
    split = make_split([[1, 2, 3], [4, 5], [9, 6]], [4, 6, 7])
    tiny_model.train()
    results = evaluate_ranking(tiny_model, split, 16, protocols=["full"], batch_size=2, ks=(1, 16),
                               show_progress=False)
    assert tiny_model.training
    tiny_model.eval()
    processor = tiny_model.processor
    with torch.no_grad():
        items = processor.encode_items(list(range(1, 17)))
        index = tiny_model.encode_items(items["input_ids"], items["attention_mask"], items["item_ids"])
        users = processor([[1, 2, 3], [4, 5], [9, 6]])
        vectors = tiny_model.encode_users(users["input_ids"], users["attention_mask"], users["history_item_ids"])
    scores = vectors @ index.t()
    ranks = []
    for row, (history, target) in enumerate(zip([[1, 2, 3], [4, 5], [9, 6]], [4, 6, 7])):
        kept = [item for item in range(1, 17) if item == target or item not in history]
        ranks.append(sum(scores[row, item - 1] >= scores[row, target - 1] for item in kept) - 1)
    ranks = np.array(ranks, dtype=float)
    assert results[FULL_CATALOG]["HR@1"] == pytest.approx(float(np.mean(ranks < 1)))
    assert results[FULL_CATALOG]["NDCG@16"] == pytest.approx(float(np.mean(1 / np.log2(ranks + 2))), rel=1e-6)


def test_random_ranker_expectation_uses_each_users_candidate_count():
    split = make_split([[1, 2], [3]], [4, 5])
    expected = RankingEvaluator(split, NUM_ITEMS, num_negatives=4, ks=(2,)).random_ranker()
    assert expected[sampled_protocol(4, 0)]["HR@2"] == pytest.approx(2 / 5)
    full = [random_ranker_expectation(candidates, 2) for candidates in (6, 7)]
    assert expected[FULL_CATALOG]["HR@2"] == pytest.approx((full[0]["HR@2"] + full[1]["HR@2"]) / 2)
    assert expected[FULL_CATALOG]["NDCG@2"] == pytest.approx((full[0]["NDCG@2"] + full[1]["NDCG@2"]) / 2)


def test_metric_keys_carry_the_protocol_and_round_trip():
    nested = {sampled_protocol(99, 0): {"HR@10": 0.5, "num_users": 3.0}, FULL_CATALOG: {"HR@10": 0.25}}
    flat = flatten_metrics(nested, "eval")
    assert flat == {"eval_sampled(1+99, seed=0)/HR@10": 0.5, "eval_sampled(1+99, seed=0)/num_users": 3.0,
                    "eval_full-catalog/HR@10": 0.25}
    assert nest_metrics({**flat, "eval_runtime": 1.0, "epoch": 2.0}, "eval") == nested
    table = format_metrics_table({"model": {FULL_CATALOG: {"NDCG@10": 0.1, "NDCG@20": 0.2, "HR@10": 0.3,
                                                           "HR@20": 0.4, "num_users": 7}}})
    assert "full-catalog" in table.splitlines()[2] and "0.3000" in table


def test_bad_inputs_are_reported():
    split = make_split([[1, 2]], [3])
    with pytest.raises(ValueError, match="lacks the column"):
        RankingEvaluator(split.remove_columns("target"), NUM_ITEMS)
    with pytest.raises(ValueError, match="subset of"):
        RankingEvaluator(split, NUM_ITEMS, protocols=["popular"])
    with pytest.raises(ValueError, match="cannot sample 99 negatives"):
        RankingEvaluator(split, NUM_ITEMS).evaluate(line_encoder(), show_progress=False)
    with pytest.raises(ValueError, match="outside 1..8"):
        RankingEvaluator(make_split([[1]], [9]), NUM_ITEMS)
    with pytest.raises(ValueError, match="empty history"):
        RankingEvaluator(make_split([[]], [2]), NUM_ITEMS)
    with pytest.raises(ValueError, match="twice"):
        RankingEvaluator(make_split([[1], [2]], [3, 4], users=[5, 5]), NUM_ITEMS)
