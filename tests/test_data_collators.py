"""Collators (keys, shapes, padding, negatives) and the all-positions / shuffled-history transforms."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from llm_srec import LLMSRecProcessor, build_tiny_backbone
from llm_srec.data import (
    LLMSRecCollator,
    SASRecCollator,
    SyntheticConfig,
    build_recommendation_data,
    expand_all_positions,
    generate_synthetic,
    left_pad,
    shuffle_histories,
)

BATCH_KEYS = {"input_ids", "attention_mask", "history_item_ids", "sasrec_input_ids", "candidate_input_ids",
              "candidate_attention_mask", "candidate_item_ids", "labels"}


@pytest.fixture(scope="module")
def data():
    return build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=40, num_items=30, min_length=4,
                                                                        max_length=16, seed=3)))


@pytest.fixture(scope="module")
def processor(data, tmp_path_factory):
    folder = build_tiny_backbone("gpt2", data.catalog.titles, tmp_path_factory.mktemp("backbone"), hidden_size=8,
                                 num_layers=1, num_attention_heads=1, vocab_size=300)
    return LLMSRecProcessor(AutoTokenizer.from_pretrained(folder), data.catalog)


def rows(dataset, indices):
    return [dataset[int(i)] for i in indices]


def test_left_pad():
    assert left_pad([[1, 2, 3], [4], []], 2).tolist() == [[2, 3], [0, 4], [0, 0]]


def test_llmsrec_batch_keys_shapes_and_negatives(data, processor):
    collator = LLMSRecCollator(processor, sasrec_maxlen=12, num_negatives=3, seed=0)
    features = rows(data.splits["train"], range(6))
    batch = collator(features)
    assert set(batch) == BATCH_KEYS
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 6
    assert batch["sasrec_input_ids"].shape == (6, 12)
    assert batch["candidate_item_ids"].shape == (6, 4)
    assert batch["candidate_input_ids"].shape[0] == 24 == batch["candidate_attention_mask"].shape[0]
    assert batch["labels"].tolist() == [0] * 6
    assert all(t.dtype == torch.long for k, t in batch.items() if k != "attention_mask")
    for row, feature in enumerate(features):
        history, target = feature["history"], feature["target"]
        candidates = batch["candidate_item_ids"][row].tolist()
        assert candidates[0] == target
        assert len(set(candidates)) == 4 and not set(candidates[1:]) & set(history + [target])
        shown = [i for i in batch["history_item_ids"][row].tolist() if i]
        assert shown == history[-processor.history_length:]
        teacher = batch["sasrec_input_ids"][row].tolist()
        kept = history[-12:]
        assert teacher[12 - len(kept):] == kept and teacher[:12 - len(kept)] == [0] * (12 - len(kept))
    # candidate prompts are the item prompts of the candidates, in row-major order
    expected = processor.encode_items(batch["candidate_item_ids"].reshape(-1).tolist())
    assert torch.equal(expected["input_ids"], batch["candidate_input_ids"])


def test_llmsrec_negatives_reproducible_per_user_and_epoch(data, processor):
    train = data.splits["train"]
    collator = LLMSRecCollator(processor, num_negatives=3, seed=0)
    first = collator(rows(train, [0, 1, 2, 3]))["candidate_item_ids"]
    again = LLMSRecCollator(processor, num_negatives=3, seed=0)(rows(train, [0, 1, 2, 3]))["candidate_item_ids"]
    assert torch.equal(first, again)
    # a user's negatives do not depend on the rest of the batch
    alone = collator(rows(train, [2]))["candidate_item_ids"]
    assert torch.equal(alone[0], first[2])
    collator.set_epoch(1)
    assert not torch.equal(collator(rows(train, [0, 1, 2, 3]))["candidate_item_ids"][:, 1:], first[:, 1:])
    other_seed = LLMSRecCollator(processor, num_negatives=3, seed=1)(rows(train, [0, 1, 2, 3]))
    assert not torch.equal(other_seed["candidate_item_ids"][:, 1:], first[:, 1:])


def test_llmsrec_known_items_are_excluded_too(data, processor):
    expanded = expand_all_positions(data.splits["train"])
    known = data.sequences("train")
    collator = LLMSRecCollator(processor, num_negatives=5, seed=0, known_items=known)
    features = [expanded[i] for i in range(len(expanded)) if expanded[i]["position"] == 1][:8]
    batch = collator(features)
    for row, feature in enumerate(features):
        negatives = set(batch["candidate_item_ids"][row, 1:].tolist())
        assert not negatives & set(known[feature["user_index"]].tolist())


def test_untimed_rows_render_without_time(processor, data):
    feature = dict(data.splits["train"][0])
    feature["history_timestamps"] = []
    batch = LLMSRecCollator(processor, seed=0)([feature])
    text = processor.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    assert "Time:" not in text and "Item No.1" in text


def test_sasrec_collator_alignment_padding_and_negatives(data):
    train = data.splits["train"]
    collator = SASRecCollator(num_items=data.num_items, maxlen=10, seed=0)
    features = rows(train, range(8))
    batch = collator(features)
    assert set(batch) == {"input_ids", "positive_ids", "negative_ids"}
    assert all(t.shape == (8, 10) for t in batch.values())
    for row, feature in enumerate(features):
        sequence = feature["history"] + [feature["target"]]
        inputs, positives, negatives = (batch[k][row].tolist() for k in ("input_ids", "positive_ids", "negative_ids"))
        n = min(len(sequence) - 1, 10)
        assert inputs[10 - n:] == sequence[:-1][-n:] and positives[10 - n:] == sequence[1:][-n:]
        assert inputs[:10 - n] == positives[:10 - n] == negatives[:10 - n] == [0] * (10 - n)
        assert all(x and x not in sequence for x in negatives[10 - n:])
    assert torch.equal(SASRecCollator(data.num_items, 10, seed=0)(features)["negative_ids"], batch["negative_ids"])
    collator.set_epoch(3)
    assert not torch.equal(collator(features)["negative_ids"], batch["negative_ids"])


def test_expand_all_positions_content_and_truncation(data):
    train = data.splits["train"]
    sequences = data.sequences("train")
    expanded = expand_all_positions(train, max_history=3)
    assert len(expanded) == sum(len(s) - 1 for s in sequences if len(s) >= 2)
    assert expanded.column_names == train.column_names + ["position"]
    user = train[0]["user_index"]
    sequence = sequences[user].tolist()
    times = data.splits["test"][user]["history_timestamps"][:len(sequence)]
    examples = [row for row in expanded if row["user_index"] == user]
    assert [e["position"] for e in examples] == list(range(1, len(sequence)))
    for e in examples:
        k = e["position"]
        assert e["target"] == sequence[k] and e["history"] == sequence[max(0, k - 3):k]
        assert e["history_timestamps"] == times[max(0, k - 3):k] and e["target_timestamp"] == times[k]
    last = examples[-1]
    assert last["target"] == train[0]["target"]
    assert len(expand_all_positions(train, max_history=None)[len(examples) - 1]["history"]) == len(sequence) - 1


def test_all_positions_examples_of_a_user_get_different_negatives(data, processor):
    expanded = expand_all_positions(data.splits["train"])
    user_rows = [row for row in expanded if row["user_index"] == 0][:4]
    negatives = LLMSRecCollator(processor, num_negatives=3, seed=0)(user_rows)["candidate_item_ids"][:, 1:]
    assert len({tuple(r) for r in negatives.tolist()}) == len(user_rows)


def test_shuffle_histories_moves_items_only(data):
    train = data.splits["train"]
    shuffled = shuffle_histories(train, seed=5)
    again = shuffle_histories(train, seed=5)
    assert shuffled.to_dict() == again.to_dict() and shuffled._fingerprint == again._fingerprint
    changed = 0
    for before, after in zip(train, shuffled):
        assert sorted(before["history"]) == sorted(after["history"])
        assert before["target"] == after["target"]
        assert before["history_timestamps"] == after["history_timestamps"]  # times stay in their slots
        changed += before["history"] != after["history"]
    assert changed >= len(train) // 2
    assert shuffle_histories(train, seed=6).to_dict() != shuffled.to_dict()
    # shuffled once, then expanded: every prefix is a prefix of the same shuffled sequence
    expanded = expand_all_positions(shuffled, max_history=None)
    first = shuffled[0]
    sequence = first["history"] + [first["target"]]
    for row in expanded:
        if row["user_index"] == first["user_index"]:
            assert row["history"] == sequence[:row["position"]]


def test_collator_needs_a_catalog(processor):
    catalog = processor.item_catalog
    processor.item_catalog = None
    try:
        with pytest.raises(ValueError, match="item catalog"):
            LLMSRecCollator(processor)
    finally:
        processor.item_catalog = catalog


def test_negatives_error_when_user_knows_almost_every_item(processor, data):
    feature = dict(data.splits["train"][0])
    feature["history"] = list(range(1, data.num_items))  # every item but the target's complement
    feature["target"] = data.num_items
    feature["history_timestamps"] = []
    with pytest.raises(ValueError, match="cannot sample 3 negatives"):
        LLMSRecCollator(processor, num_negatives=3)([feature])
