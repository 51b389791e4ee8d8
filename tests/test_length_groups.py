"""Grouping a batch's prompts by length changes the padding the backbone runs on, never a row's output."""

from __future__ import annotations

import pytest
import torch

from llm_srec.modeling.length_groups_llm_srec import length_groups


def test_groups_cover_every_row_once_and_split_only_when_it_pays():
    lengths = [50, 10, 12, 48, 11, 52, 9, 49]
    groups = length_groups(lengths)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    assert [sorted(lengths[row] for row in group) for group in groups] == [[9, 10, 11, 12], [48, 49, 50, 52]]
    assert length_groups([30, 31, 29, 30]) == [[2, 0, 3, 1]]  # equal lengths: one call
    assert length_groups([7]) == [[0]]
    padded = sum(len(group) * max(lengths[row] for row in group) for group in groups)
    assert padded < len(lengths) * max(lengths) * 0.7


@pytest.mark.parametrize("kind", ["llama", "bert"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_grouped_users_and_items_get_the_unsplit_scores(make_tiny_model, ordered_task, kind, padding_side):
    model = make_tiny_model(kind)
    model.item_prefix_cache_mb = 0  # the full forward of the item prompts is grouped too
    processor = model.processor
    processor.tokenizer.padding_side = padding_side
    histories = [history[-length:] for history, length in zip(ordered_task["histories"], [1, 7, 2, 6, 1, 5, 2, 7])]
    users = processor(histories)
    items = processor.encode_items(list(range(1, 17)))
    assert len(length_groups(users["attention_mask"].sum(-1).tolist())) > 1
    results = []
    for grouped in (False, True):
        model.group_prompts_by_length = grouped
        with torch.no_grad():
            results.append((
                model.encode_users(users["input_ids"], users["attention_mask"], users["history_item_ids"]),
                model.encode_items(items["input_ids"], items["attention_mask"], items["item_ids"]),
            ))
    for unsplit, grouped in zip(*results):
        torch.testing.assert_close(grouped, unsplit)


def test_grouped_training_step_has_the_unsplit_loss_and_gradients(make_tiny_model, make_training_batch, ordered_task):
    model = make_tiny_model("llama").train()
    histories = [history[-length:] for history, length in zip(ordered_task["histories"], [1, 7, 1, 6])]
    batch = make_training_batch(model, histories, ordered_task["targets"][:4], ordered_task["negatives"][:4])
    assert len(length_groups(batch["attention_mask"].sum(-1).tolist())) > 1
    results = []
    for grouped in (False, True):
        model.group_prompts_by_length = grouped
        model.zero_grad()
        output = model(**batch)
        output.loss.backward()
        results.append((output.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, gradient in results[1][1].items():
        torch.testing.assert_close(gradient, results[0][1][name], msg=name)
