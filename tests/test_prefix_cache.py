"""The item-prompt prefix cache gives the full forward's scores and gradients, and falls back where it cannot."""

from __future__ import annotations

import pytest
import torch

from llm_srec.modeling.prefix_cache_llm_srec import ItemPrefixCache, split_item_prompts

ALL_ITEMS = list(range(1, 17))


def _encode_all(model, cache_mb: int) -> torch.Tensor:
    model.item_prefix_cache_mb = cache_mb
    batch = model.processor.encode_items(ALL_ITEMS)
    with torch.no_grad():
        return model.encode_items(batch["input_ids"], batch["attention_mask"], batch["item_ids"])


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_cached_item_vectors_equal_the_full_forward(make_tiny_model, kind, padding_side):
    model = make_tiny_model(kind)
    model.processor.tokenizer.padding_side = padding_side
    full = _encode_all(model, 0)
    assert len(model._item_prefix_cache) == 0
    first = _encode_all(model, 64)
    cache = model._item_prefix_cache
    assert (cache.misses, cache.hits) == (len(ALL_ITEMS), 0)
    second = _encode_all(model, 64)
    assert (cache.misses, cache.hits) == (len(ALL_ITEMS), len(ALL_ITEMS))
    torch.testing.assert_close(first, full)
    torch.testing.assert_close(second, full)
    assert not torch.equal(full[0], full[1])


def test_cached_training_step_has_the_full_forward_loss_and_gradients(make_tiny_model, make_training_batch, ordered_task):
    model = make_tiny_model("llama").train()
    batch = make_training_batch(
        model, ordered_task["histories"][:4], ordered_task["targets"][:4], ordered_task["negatives"][:4]
    )
    results = []
    for cache_mb in (0, 64, 64):  # off, cold cache, warm cache
        model.item_prefix_cache_mb = cache_mb
        model.zero_grad()
        output = model(**batch)
        output.loss.backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        results.append((output.loss.detach(), gradients))
    assert model._item_prefix_cache.hits > 0
    assert model.item_projection[0].weight.grad.abs().sum() > 0
    for loss, gradients in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, results[0][1][name], msg=name)


def test_recommendations_are_the_same_with_the_cache(make_tiny_model):
    model = make_tiny_model("llama")
    histories = [["I01", "I02", "I03"], ["I09", "I04"]]
    model.item_prefix_cache_mb = 0
    expected = model.recommend(histories, k=5)
    model.item_prefix_cache_mb = 64
    model.refresh_item_index()
    got = model.recommend(histories, k=5)
    assert [r.item_ids for r in got] == [r.item_ids for r in expected]
    torch.testing.assert_close(torch.tensor([r.scores for r in got]), torch.tensor([r.scores for r in expected]))


def test_bidirectional_backbone_runs_the_full_forward(make_tiny_model):
    model = make_tiny_model("bert")
    assert "not a causal decoder" in model._prefix_cache_unsupported
    _encode_all(model, 64)
    assert len(model._item_prefix_cache) == 0


def test_lora_backbone_runs_the_full_forward(make_tiny_model):
    pytest.importorskip("peft")
    model = make_tiny_model("llama", lora_config={"r": 2, "target_modules": ["q_proj", "v_proj"]})
    _encode_all(model, 64)
    assert len(model._item_prefix_cache) == 0


def test_dropout_and_gradient_checkpointing_fall_back_while_training(make_tiny_model, make_training_batch, ordered_task):
    gpt2 = make_tiny_model("gpt2").train()
    assert gpt2._backbone_has_dropout
    _encode_all(gpt2, 64)  # train mode: GPT-2's dropout is active, so its prefix states are not fixed
    assert len(gpt2._item_prefix_cache) == 0
    gpt2.eval()
    _encode_all(gpt2, 64)
    assert len(gpt2._item_prefix_cache) == len(ALL_ITEMS)

    llama = make_tiny_model("llama").train()
    llama.llm.activation_checkpointing_enable()
    batch = make_training_batch(
        llama, ordered_task["histories"][:2], ordered_task["targets"][:2], ordered_task["negatives"][:2]
    )
    llama(**batch).loss.backward()
    assert len(llama._item_prefix_cache) == 0


def test_cache_is_bounded_and_keeps_what_it_holds_when_full():
    entry = (torch.zeros(2, 1, 4, 8),)  # 256 bytes
    cache = ItemPrefixCache(max_bytes=3 * 256)
    weight = torch.zeros(1)
    cache.missing([], weight)  # the backbone's device and dtype, which the entries belong to
    for key in range(5):
        cache._store((key,), entry)
    assert len(cache) == 3 and cache.nbytes == 3 * 256
    assert cache.missing([(0,), (1,), (2,), (3,), (4,)], weight) == [False, False, False, True, True]


def test_a_catalog_larger_than_the_cache_scores_exactly_and_hits_for_what_it_holds(make_tiny_model):
    model = make_tiny_model("llama")
    full = _encode_all(model, 0)
    _encode_all(model, 64)
    entry_mib = model._item_prefix_cache.nbytes / len(ALL_ITEMS) / 2**20
    model.clear_item_prefix_cache()
    cache = model._item_prefix_cache
    first = _encode_all(model, entry_mib * 5.5)  # room for 5 of the 16 prefixes
    assert len(cache) == 5
    second = _encode_all(model, entry_mib * 5.5)
    assert cache.hits == 5  # a scan over a catalog larger than the cache still reuses what it holds
    torch.testing.assert_close(first, full)
    torch.testing.assert_close(second, full)


def test_split_item_prompts_ignores_padding_on_either_side():
    ids = torch.tensor([[5, 6, 7, 99, 8, 0, 0], [0, 0, 5, 6, 99, 8, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]])
    prefixes, suffixes = split_item_prompts(ids, mask, slot_token_id=99)
    assert prefixes == [(5, 6, 7), (5, 6)]
    assert suffixes == [[99, 8], [99, 8, 1]]


def test_a_cold_cache_adds_no_backbone_call_and_mixed_batches_match(make_tiny_model):
    model = make_tiny_model("llama")
    calls = []
    hook = model.llm.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        full = _encode_all(model, 0)
        without_cache = len(calls)
        calls.clear()
        cold = _encode_all(model, 64)  # the prefix states come from the same full forward
        assert len(calls) == without_cache and len(model._item_prefix_cache) == len(ALL_ITEMS)
        model.clear_item_prefix_cache()
        half = model.processor.encode_items(ALL_ITEMS[::2])
        with torch.no_grad():
            model.encode_items(half["input_ids"], half["attention_mask"], half["item_ids"])
        mixed = _encode_all(model, 64)  # half the rows cached, half run in full
    finally:
        hook.remove()
    torch.testing.assert_close(cold, full)
    torch.testing.assert_close(mixed, full)
