"""SASRec teacher: architecture (checked against an independent re-computation), padding/window semantics,
losses, scores, initialisation, bad input, learning an ordered task, and save/load."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from llm_srec import SASRecConfig, SASRecModel, SASRecOutput


def reference_states(model: SASRecModel, ids: torch.Tensor) -> torch.Tensor:
    """PAPER.md §4.2 written out with plain tensor ops on the model's weights (single head, eval mode)."""
    config = model.config
    d = config.hidden_size
    eps = config.layer_norm_eps
    keep = (ids != 0).unsqueeze(-1).float()
    x = model.item_embedding.weight[ids] * math.sqrt(d) + model.position_embedding.weight[: ids.shape[1]]
    x = x * keep
    causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    for block in model.layers:
        norm1 = block.attention_layer_norm
        q_in = F.layer_norm(x, (d,), norm1.weight, norm1.bias, eps)
        w, b = block.attention.in_proj_weight, block.attention.in_proj_bias
        q = q_in @ w[:d].t() + b[:d]
        k = x @ w[d : 2 * d].t() + b[d : 2 * d]
        v = x @ w[2 * d :].t() + b[2 * d :]
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + causal, dim=-1) @ v
        attention = attention @ block.attention.out_proj.weight.t() + block.attention.out_proj.bias
        norm2 = block.feed_forward_layer_norm
        h = F.layer_norm(q_in + attention, (d,), norm2.weight, norm2.bias, eps)
        ffn = block.feed_forward
        h = h + ffn.dense_out(torch.relu(ffn.dense_in(h)))
        x = h * keep
    final = model.final_layer_norm
    return F.layer_norm(x, (d,), final.weight, final.bias, eps)


def left_pad(sequences: list[list[int]], length: int) -> torch.Tensor:
    return torch.tensor([[0] * (length - len(s)) + s for s in sequences])


def test_forward_matches_the_papers_architecture(tiny_sasrec):
    ids = left_pad([[3, 1, 4, 1, 5], [9, 2, 6], list(range(1, 17)) + [2, 3, 4, 5]], 20)
    with torch.no_grad():
        output = tiny_sasrec(ids)
        expected = reference_states(tiny_sasrec, ids)
    assert isinstance(output, SASRecOutput)
    torch.testing.assert_close(output.last_hidden_state, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.user_embeddings, expected[:, -1])
    assert output.loss is None


def test_inputs_are_left_padded_to_the_window_and_truncated_to_the_most_recent_items(tiny_sasrec):
    maxlen = tiny_sasrec.config.max_position_embeddings
    with torch.no_grad():
        short = tiny_sasrec(torch.tensor([[7, 8, 9]]))
        padded = tiny_sasrec(torch.tensor([[0, 0, 0, 0, 7, 8, 9]]))
        full = tiny_sasrec(left_pad([[7, 8, 9]], maxlen))
        long_history = [(i % 16) + 1 for i in range(maxlen + 7)]
        too_long = tiny_sasrec(torch.tensor([long_history]))
        kept = tiny_sasrec(torch.tensor([long_history[-maxlen:]]))
    assert short.last_hidden_state.shape == (1, 3, 16)
    assert padded.last_hidden_state.shape == (1, 7, 16)
    torch.testing.assert_close(short.user_embeddings, padded.user_embeddings)
    torch.testing.assert_close(short.user_embeddings, full.user_embeddings)
    assert too_long.last_hidden_state.shape == (1, maxlen, 16)
    torch.testing.assert_close(too_long.user_embeddings, kept.user_embeddings)
    assert torch.equal(tiny_sasrec.encode_users(torch.tensor([[7, 8, 9]])), short.user_embeddings)


def test_attention_is_causal_and_order_matters(tiny_sasrec):
    base = torch.tensor([[1, 2, 3, 4, 5]])
    newest_changed = torch.tensor([[1, 2, 3, 4, 9]])
    shuffled = torch.tensor([[5, 3, 1, 4, 2]])
    with torch.no_grad():
        a, b, c = tiny_sasrec(base), tiny_sasrec(newest_changed), tiny_sasrec(shuffled)
    torch.testing.assert_close(a.last_hidden_state[:, :-1], b.last_hidden_state[:, :-1])
    assert not torch.allclose(a.user_embeddings, b.user_embeddings)
    assert not torch.allclose(a.user_embeddings, c.user_embeddings, atol=1e-3)


def test_bce_loss_is_one_negative_per_non_padded_position(tiny_sasrec):
    inputs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    positives = torch.tensor([[0, 0, 2, 3, 4], [5, 6, 7, 8, 9]])
    negatives = torch.tensor([[0, 0, 10, 11, 12], [13, 14, 15, 16, 1]])
    with torch.no_grad():
        output = tiny_sasrec(inputs, positive_ids=positives, negative_ids=negatives)
    states = output.last_hidden_state
    mask = positives != 0
    table = tiny_sasrec.item_embeddings
    pos = (states[mask] * table[positives[mask]]).sum(-1)
    neg = (states[mask] * table[negatives[mask]]).sum(-1)
    expected = -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()
    torch.testing.assert_close(output.loss, expected)
    # `labels` is the Trainer-friendly alias of positive_ids
    with torch.no_grad():
        aliased = tiny_sasrec(inputs, negative_ids=negatives, labels=positives)
    torch.testing.assert_close(aliased.loss, output.loss)


def test_ce_loss_is_full_catalog_softmax_without_the_padding_item(tiny_sasrec_config):
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(**{**tiny_sasrec_config.to_dict(), "loss_type": "ce"})).eval()
    inputs = torch.tensor([[0, 0, 1, 2, 3]])
    positives = torch.tensor([[0, 0, 2, 3, 4]])
    with torch.no_grad():
        output = model(inputs, positive_ids=positives)
    logits = output.last_hidden_state[0, 2:] @ model.item_embeddings[1:].t()
    expected = F.cross_entropy(logits, positives[0, 2:] - 1)
    torch.testing.assert_close(output.loss, expected)


def test_scores_are_dot_products_with_the_item_table(tiny_sasrec):
    ids = torch.tensor([[1, 2, 3], [0, 4, 5]])
    with torch.no_grad():
        users = tiny_sasrec.encode_users(ids)
        full = tiny_sasrec.score(ids)
        per_user = tiny_sasrec.score(ids, torch.tensor([[6, 7], [8, 9]]))
        shared = tiny_sasrec.score(ids, torch.tensor([6, 7, 8]))
    table = tiny_sasrec.item_embeddings
    assert full.shape == (2, 17)
    assert torch.isneginf(full[:, 0]).all()
    torch.testing.assert_close(full[:, 1:], users @ table[1:].t())
    torch.testing.assert_close(per_user, torch.stack([users[0] @ table[[6, 7]].t(), users[1] @ table[[8, 9]].t()]))
    torch.testing.assert_close(shared, users @ table[[6, 7, 8]].t())


def test_initialisation_is_xavier_normal_with_a_zero_padding_row(tiny_sasrec):
    table = tiny_sasrec.item_embeddings
    assert torch.equal(table[0], torch.zeros(16))
    xavier_std = math.sqrt(2.0 / (table.shape[0] + table.shape[1]))
    assert 0.7 * xavier_std < table[1:].std().item() < 1.3 * xavier_std
    block = tiny_sasrec.layers[0]
    assert torch.equal(block.attention.in_proj_bias, torch.zeros(48))
    assert torch.equal(block.attention_layer_norm.weight, torch.ones(16))
    assert block.feed_forward.dense_in.weight.std().item() > 0.1  # xavier for 16x16 ~ 0.25, not normal(0, 0.02)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.tensor([[1, 2, 17]]), r"Unknown input item ids \[17\]"),
        (torch.tensor([[1, -3, 2]]), r"Unknown input item ids \[-3\]"),
        (torch.tensor([1, 2, 3]), r"\(batch, length\)"),
    ],
)
def test_bad_item_ids_raise_clear_errors(tiny_sasrec, ids, message):
    with pytest.raises(ValueError, match=message):
        tiny_sasrec(ids)


def test_bad_training_inputs_raise_clear_errors(tiny_sasrec):
    inputs = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="needs negative_ids"):
        tiny_sasrec(inputs, positive_ids=torch.tensor([[2, 3, 4]]))
    with pytest.raises(ValueError, match="Unknown positive item ids"):
        tiny_sasrec(inputs, positive_ids=torch.tensor([[2, 3, 40]]), negative_ids=torch.tensor([[5, 5, 5]]))
    with pytest.raises(ValueError, match="must match input_ids"):
        tiny_sasrec(inputs, positive_ids=torch.tensor([[2, 3]]), negative_ids=torch.tensor([[5, 5]]))
    with pytest.raises(ValueError, match="either as positive_ids or as labels"):
        tiny_sasrec(inputs, positive_ids=torch.tensor([[2, 3, 4]]), labels=torch.tensor([[2, 3, 5]]))
    with pytest.raises(ValueError, match="Unknown candidate item ids"):
        tiny_sasrec.score(inputs, torch.tensor([0, 99]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_items": 0}, "num_items must be a positive integer"),
        ({"hidden_size": 10, "num_attention_heads": 3}, "divisible by num_attention_heads"),
        ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be a number in \[0, 1\)"),
        ({"loss_type": "bpr"}, "loss_type must be one of"),
        ({"max_position_embeddings": -1}, "max_position_embeddings must be a positive integer"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SASRecConfig(**kwargs)


def test_model_needs_num_items():
    with pytest.raises(ValueError, match="num_items must be set"):
        SASRecModel(SASRecConfig())


def test_sasrec_learns_the_ordered_task(tiny_sasrec_config):
    """Item i is always followed by item i+1: after BCE training the top-1 full-catalog prediction is right."""
    torch.manual_seed(0)
    model = SASRecModel(tiny_sasrec_config)
    generator = torch.Generator().manual_seed(0)
    sequences = [[(start + step) % 16 + 1 for step in range(12)] for start in range(16)]
    inputs = left_pad([s[:-1] for s in sequences], 20)
    positives = left_pad([s[1:] for s in sequences], 20)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    model.train()
    losses = []
    for _ in range(60):
        negatives = torch.randint(1, 17, positives.shape, generator=generator) * (positives != 0)
        loss = model(inputs, positive_ids=positives, negative_ids=negatives).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        predictions = model.score(inputs).argmax(-1)
    expected = torch.tensor([s[-1] for s in sequences])
    assert losses[-1] < 0.3 * losses[0]
    assert (predictions == expected).float().mean().item() >= 0.9


def test_save_load_roundtrip_and_auto_classes(tiny_sasrec, tmp_path):
    tiny_sasrec.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_sasrec.py").is_file() and (tmp_path / "configuration_sasrec.py").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SASRecConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SASRecModel)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(ids), tiny_sasrec.score(ids))


# ------------------------------------------------------------------ the optimised attention and loss (issue 14)
# The checkpoint layout before the grouped attention and the fused cross-entropy: names and shapes must not change.
SASREC_STATE_DICT_LAYOUT = {
    "item_embedding.weight": (17, 16),
    "position_embedding.weight": (20, 16),
    **{
        f"layers.{i}.{name}": shape
        for i in range(2)
        for name, shape in {
            "attention_layer_norm.weight": (16,),
            "attention_layer_norm.bias": (16,),
            "attention.in_proj_weight": (48, 16),
            "attention.in_proj_bias": (48,),
            "attention.out_proj.weight": (16, 16),
            "attention.out_proj.bias": (16,),
            "feed_forward_layer_norm.weight": (16,),
            "feed_forward_layer_norm.bias": (16,),
            "feed_forward.dense_in.weight": (16, 16),
            "feed_forward.dense_in.bias": (16,),
            "feed_forward.dense_out.weight": (16, 16),
            "feed_forward.dense_out.bias": (16,),
        }.items()
    },
    "final_layer_norm.weight": (16,),
    "final_layer_norm.bias": (16,),
}


def mha_reference_states(model: SASRecModel, ids: torch.Tensor) -> torch.Tensor:
    """The model as it was written before the speed-up: `nn.MultiheadAttention` with a bool causal mask over every
    position, padded queries included (eval mode)."""
    keep = (ids != 0).unsqueeze(-1).float()
    x = model.item_embedding(ids) * math.sqrt(model.config.hidden_size) + model.position_embedding.weight
    x = x * keep
    causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).triu(1)
    for block in model.layers:
        q = block.attention_layer_norm(x)
        attended, _ = block.attention(q, x, x, attn_mask=causal, need_weights=False)
        x = block.feed_forward(block.feed_forward_layer_norm(q + attended)) * keep
    return model.final_layer_norm(x)


def ragged_batch(rows: int, maxlen: int, num_items: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Left-padded inputs, positives and negatives of random lengths, with whole padding rows (more than one
    attention group of them) and rows of every length up to the window."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, maxlen + 1, (rows,), generator=generator)
    lengths[:20] = 0
    lengths[20] = maxlen
    lengths = lengths[torch.randperm(rows, generator=generator)]
    positions = torch.arange(maxlen)
    real = positions >= maxlen - lengths[:, None]
    inputs = torch.randint(1, num_items + 1, (rows, maxlen), generator=generator) * real
    positives = torch.randint(1, num_items + 1, (rows, maxlen), generator=generator) * real
    negatives = torch.randint(1, num_items + 1, (rows, maxlen), generator=generator) * real
    return inputs, positives, negatives


@pytest.mark.parametrize("heads", [1, 2])
def test_grouped_attention_matches_multihead_attention(tiny_sasrec_config, heads):
    torch.manual_seed(0)
    config = SASRecConfig(**{**tiny_sasrec_config.to_dict(), "num_attention_heads": heads})
    model = SASRecModel(config).eval()
    inputs, _, _ = ragged_batch(53, config.max_position_embeddings, config.num_items)
    with torch.no_grad():
        states = model(inputs).last_hidden_state
        expected = mha_reference_states(model, inputs)
    torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-5)
    assert not states.isnan().any()


@pytest.mark.parametrize("loss_type", ["bce", "ce"])
def test_losses_and_gradients_match_the_reference_math(tiny_sasrec_config, loss_type):
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(**{**tiny_sasrec_config.to_dict(), "loss_type": loss_type})).eval()
    inputs, positives, negatives = ragged_batch(40, model.config.max_position_embeddings, model.config.num_items)
    loss = model(inputs, positive_ids=positives, negative_ids=negatives).loss
    grads = torch.autograd.grad(loss, list(model.parameters()))
    states = mha_reference_states(model, inputs)[positives != 0]
    table = model.item_embedding.weight
    targets = positives[positives != 0]
    if loss_type == "ce":
        logits = (states @ table.t()).masked_fill(torch.arange(table.shape[0]) == 0, torch.finfo(states.dtype).min)
        expected = F.cross_entropy(logits, targets)
    else:
        pos = (states * table[targets]).sum(-1)
        neg = (states * table[negatives[positives != 0]]).sum(-1)
        expected = -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    torch.testing.assert_close(loss, expected)
    for (name, _), grad, expected_grad in zip(model.named_parameters(), grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-4, msg=name)


def test_catalog_cross_entropy_gradients_equal_plain_cross_entropy():
    """Blocks of rows (more than one block here), the padding row excluded, and the incoming gradient scaled."""
    from llm_srec.modeling.modeling_sasrec import _CatalogCrossEntropy

    generator = torch.Generator().manual_seed(0)
    states = torch.randn(700, 8, generator=generator, requires_grad=True)
    table = torch.randn(2001, 8, generator=generator, requires_grad=True)
    targets = torch.randint(1, 2001, (700,), generator=generator)
    loss = _CatalogCrossEntropy.apply(states, table, targets, True)
    grads = torch.autograd.grad(3.0 * loss, (states, table))
    expected = F.cross_entropy(states @ table[1:].t(), targets - 1)
    expected_grads = torch.autograd.grad(3.0 * expected, (states, table))
    torch.testing.assert_close(loss, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)
    assert torch.equal(grads[1][0], torch.zeros(8))
    with torch.no_grad():
        torch.testing.assert_close(_CatalogCrossEntropy.apply(states, table, targets, False), expected)


@pytest.mark.parametrize("training", [False, True])
def test_all_padding_rows_give_no_nan(tiny_sasrec_config, training):
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(**{**tiny_sasrec_config.to_dict(), "loss_type": "ce"})).train(training)
    inputs = torch.zeros(20, 20, dtype=torch.long)
    inputs[3, -4:] = torch.tensor([1, 2, 3, 4])
    positives = torch.zeros_like(inputs)
    positives[3, -4:] = torch.tensor([2, 3, 4, 5])
    output = model(inputs, positive_ids=positives)
    output.loss.backward()
    assert not output.last_hidden_state.isnan().any()
    assert all(not parameter.grad.isnan().any() for parameter in model.parameters())
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(inputs).last_hidden_state, mha_reference_states(model, inputs))


def test_dropout_applies_in_training_and_runs_are_deterministic(tiny_sasrec_config):
    inputs, positives, negatives = ragged_batch(24, 20, tiny_sasrec_config.num_items)

    def run(hidden: float, attention: float, training: bool = True, seed: int = 0) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)
        options = {"hidden_dropout_prob": hidden, "attention_probs_dropout_prob": attention}
        model = SASRecModel(SASRecConfig(**{**tiny_sasrec_config.to_dict(), **options})).train(training)
        torch.manual_seed(seed)
        output = model(inputs, positive_ids=positives, negative_ids=negatives)
        output.loss.backward()
        return output.last_hidden_state, output.loss, model.layers[0].attention.in_proj_weight.grad

    evaluated = run(0.0, 0.0, training=False)
    for got, expected in zip(run(0.0, 0.0), evaluated, strict=True):
        torch.testing.assert_close(got, expected)
    for hidden, attention in ((0.0, 0.5), (0.5, 0.0)):
        assert not torch.allclose(run(hidden, attention)[0], evaluated[0], atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(run(0.2, 0.2), run(0.2, 0.2), strict=True))
    assert not torch.equal(run(0.2, 0.2)[0], run(0.2, 0.2, seed=1)[0])


def test_state_dict_layout_is_unchanged(tiny_sasrec):
    assert {key: tuple(value.shape) for key, value in tiny_sasrec.state_dict().items()} == SASREC_STATE_DICT_LAYOUT
    generator = torch.Generator().manual_seed(1)
    saved = {key: torch.randn(shape, generator=generator) for key, shape in SASREC_STATE_DICT_LAYOUT.items()}
    tiny_sasrec.load_state_dict(saved, strict=True)
    assert torch.equal(tiny_sasrec.layers[1].attention.in_proj_weight, saved["layers.1.attention.in_proj_weight"])


def test_an_empty_batch_encodes_to_empty_outputs(tiny_sasrec):
    empty = torch.zeros(0, 5, dtype=torch.long)
    with torch.no_grad():
        assert tiny_sasrec.encode_users(empty).shape == (0, 16)
        assert tiny_sasrec(empty).last_hidden_state.shape == (0, 5, 16)
