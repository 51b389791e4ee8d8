"""LLMSRecForRecommendation on tiny Llama, GPT-2 and BERT backbones: what trains, what stays frozen, losses,
gradient checkpointing, padding/batch invariance, checkpoints, recommendation, LoRA and bad input."""

from __future__ import annotations

import json
import os
import types

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import AutoModel, AutoTokenizer, LlamaConfig
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutput

from llm_srec import (
    ItemCatalog,
    LLMSRecConfig,
    LLMSRecForRecommendation,
    LLMSRecOutput,
    LLMSRecProcessor,
    Recommendation,
    SASRecConfig,
    SASRecModel,
)
from llm_srec.modeling.length_groups_llm_srec import length_groups

KINDS = ["llama", "gpt2", "bert"]
TRAINABLE = {"item_projection", "user_head", "item_head", "cf_user_head", "user_out_embedding", "item_out_embedding"}
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0}


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}


def frozen_snapshot(model: LLMSRecForRecommendation) -> dict[str, torch.Tensor]:
    tensors = {f"llm.{k}": v for k, v in model.llm.state_dict().items() if "lora_" not in k}
    tensors.update({f"sasrec.{k}": v for k, v in model.sasrec.state_dict().items()})
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


def subset_batch(batch: dict[str, torch.Tensor], users: int) -> dict[str, torch.Tensor]:
    candidates = batch["candidate_item_ids"].shape[1]
    out = {key: value[:users] for key, value in batch.items()}
    out["candidate_input_ids"] = batch["candidate_input_ids"][: users * candidates]
    out["candidate_attention_mask"] = batch["candidate_attention_mask"][: users * candidates]
    return out


@pytest.fixture
def task_batch(tiny_model, ordered_task, make_training_batch):
    return make_training_batch(
        tiny_model, ordered_task["histories"], ordered_task["targets"], ordered_task["negatives"]
    )


# ---------------------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("kind", KINDS)
def test_only_f_i_the_heads_and_the_two_tokens_require_grad(make_tiny_model, kind):
    model = make_tiny_model(kind)
    assert {name.split(".")[0] for name in trainable_parameters(model)} == TRAINABLE
    assert not any(p.requires_grad for p in model.llm.parameters())
    assert not any(p.requires_grad for p in model.sasrec.parameters())
    d_llm, d_teacher = model.llm.config.hidden_size, model.sasrec.config.hidden_size
    shapes = [
        (model.item_projection, nn.LeakyReLU, (d_teacher, d_llm, d_llm)),
        (model.user_head, nn.LeakyReLU, (d_llm, 32, 16)),
        (model.item_head, nn.LeakyReLU, (d_llm, 32, 16)),
        (model.cf_user_head, nn.GELU, (d_teacher, 16, 16)),
    ]
    for head, activation, (d_in, d_hidden, d_out) in shapes:
        assert [type(module) for module in head] == [nn.Linear, nn.LayerNorm, activation, nn.Linear]
        assert (head[0].in_features, head[0].out_features, head[3].in_features, head[3].out_features) == (
            d_in,
            d_hidden,
            d_hidden,
            d_out,
        )
    assert model.user_out_embedding.shape == model.item_out_embedding.shape == (d_llm,)
    # the output vectors start as draws from normal(mean, std) of the backbone's input embedding matrix
    table = model.llm.get_input_embeddings().weight
    for vector in (model.user_out_embedding, model.item_out_embedding):
        assert abs(vector.mean().item() - table.mean().item()) < 4 * table.std().item() / d_llm**0.5
        assert 0.5 < vector.std().item() / table.std().item() < 1.6
    # the backbone is never resized: the special tokens live in the tokenizer only
    assert table.shape[0] == model.config.llm_config.vocab_size < len(model.processor.tokenizer)


def test_head_sizes_reproduce_the_papers_parameter_count():
    """PAPER.md §3.3 with Llama-3.2-3B's d_llm = 3072 and d = 64: 22,797,056 trainable parameters (~22.80M)."""
    with torch.device("meta"):
        backbone = LlamaConfig(
            hidden_size=3072,
            num_hidden_layers=1,
            num_attention_heads=24,
            num_key_value_heads=8,
            intermediate_size=64,
            vocab_size=32,
        )
        model = LLMSRecForRecommendation(LLMSRecConfig(llm_config=backbone, sasrec_config=SASRecConfig(num_items=10)))
    heads = ("item_projection", "user_head", "item_head", "cf_user_head")
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in heads}
    assert counts == {
        "item_projection": 9_646_080,
        "user_head": 6_559_872,
        "item_head": 6_559_872,
        "cf_user_head": 25_088,
    }
    assert model.get_nb_trainable_parameters()[0] == 22_797_056


# ----------------------------------------------------------------------------------------------------- training
def test_training_moves_only_the_trainable_parts_and_the_loss_falls(tiny_model, task_batch, capsys):
    model = tiny_model
    frozen = frozen_snapshot(model)
    trainable = trainable_parameters(model)
    initial = {name: parameter.detach().clone() for name, parameter in trainable.items()}
    optimizer = torch.optim.Adam(trainable.values(), lr=3e-3, betas=(0.9, 0.98))
    model.train()
    assert not model.sasrec.training  # the teacher always runs in eval mode
    losses, retrieval = [], []
    for _ in range(60):
        output = model(**task_batch)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
        retrieval.append(output.retrieval_loss.item())
    model.eval()
    after = frozen_snapshot(model)
    assert after.keys() == frozen.keys()
    assert all(torch.equal(after[name], frozen[name]) for name in frozen)  # bit-identical backbone and teacher
    assert all(not torch.equal(trainable[name], initial[name]) for name in trainable)
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0]
    assert retrieval[-1] < 0.2 * retrieval[0]
    with torch.no_grad():
        logits = model(**task_batch).logits
    assert (logits.argmax(-1) == 0).float().mean().item() >= 0.9  # the next item beats the 3 negatives
    model.print_trainable_parameters()
    trainable_count, total = model.get_nb_trainable_parameters()
    assert f"trainable params: {trainable_count:,d} || all params: {total:,d}" in capsys.readouterr().out


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_checkpointing_through_the_frozen_backbone_reaches_the_injected_vectors(
    make_tiny_model, ordered_task, make_training_batch, kind
):
    model = make_tiny_model(kind)
    batch = subset_batch(
        make_training_batch(model, ordered_task["histories"], ordered_task["targets"], ordered_task["negatives"]), 4
    )
    model.train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(0)  # identical dropout masks (GPT-2/BERT) in both runs
        model(**batch).loss.backward()
        return {name: p.grad.clone() for name, p in trainable_parameters(model).items()}

    plain = gradients()
    model.activation_checkpointing_enable()
    layers = [module for module in model.llm.modules() if isinstance(module, GradientCheckpointingLayer)]
    assert layers and all(layer.gradient_checkpointing for layer in layers)
    assert all(layer._gradient_checkpointing_func.keywords == {"use_reentrant": False} for layer in layers)
    calls = []
    for layer in layers:
        original = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k)
    checkpointed = gradients()
    forwards = sum(  # the user and the candidate prompts, each in its length groups
        len(length_groups(batch[key].sum(-1).tolist())) for key in ("attention_mask", "candidate_attention_mask")
    )
    assert len(calls) == forwards * len(layers)
    for name in ("user_out_embedding", "item_out_embedding", "item_projection.0.weight", "item_projection.3.weight"):
        assert checkpointed[name].abs().sum() > 0
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-4)
    assert not any(p.grad is not None for p in model.llm.parameters())


# --------------------------------------------------------------------------------------------------------- losses
def _uniformity(x: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    return torch.exp(-2 * ((x[rows] - x[cols]) ** 2).sum(-1)).mean()


def test_losses_are_eq1_the_codes_normalised_mse_and_uniformity(tiny_model, task_batch):
    batch = subset_batch(task_batch, 6)
    with torch.no_grad():
        output = tiny_model(**batch)
        teacher = tiny_model.cf_user_head(tiny_model.sasrec.encode_users(batch["sasrec_input_ids"]))
    assert isinstance(output, LLMSRecOutput)
    assert output.logits.shape == (6, 4) and output.item_embeddings.shape == (6, 4, 16)
    assert output.user_hidden_states.shape == (6, tiny_model.llm.config.hidden_size)
    dot_products = (output.item_embeddings @ output.user_embeddings.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(output.logits, dot_products)
    torch.testing.assert_close(output.teacher_embeddings, teacher)
    users, teachers = F.normalize(output.user_embeddings, dim=-1), F.normalize(teacher, dim=-1)
    retrieval = -torch.log_softmax(output.logits, -1)[:, 0].mean()
    distillation = ((users - teachers) ** 2).mean()
    uniformity = _uniformity(users) + _uniformity(teachers)
    torch.testing.assert_close(output.retrieval_loss, retrieval)
    torch.testing.assert_close(output.distillation_loss, distillation)
    torch.testing.assert_close(output.uniformity_loss, uniformity)
    torch.testing.assert_close(output.loss, retrieval + distillation + uniformity)


def test_loss_weights_and_the_contrastive_variant(make_tiny_model, ordered_task, make_training_batch):
    args = (ordered_task["histories"][:5], ordered_task["targets"][:5], ordered_task["negatives"][:5])
    model = make_tiny_model("llama", distillation_loss_weight=0.0, uniformity_loss_weight=2.0)
    batch = make_training_batch(model, *args)
    with torch.no_grad():
        output = model(**batch)
    assert output.distillation_loss is None
    torch.testing.assert_close(output.loss, output.retrieval_loss + 2.0 * output.uniformity_loss)

    retrieval_only = make_tiny_model("llama", distillation_loss_weight=0.0, uniformity_loss_weight=0.0)
    batch = make_training_batch(retrieval_only, *args)
    del batch["sasrec_input_ids"]  # the teacher is not needed at all
    with torch.no_grad():
        output = retrieval_only(**batch)
    assert output.distillation_loss is None and output.uniformity_loss is None and output.teacher_embeddings is None
    torch.testing.assert_close(output.loss, output.retrieval_loss)

    contrastive = make_tiny_model("llama", distillation_loss="contrastive")
    with torch.no_grad():
        output = contrastive(**make_training_batch(contrastive, *args))
    users = F.normalize(output.user_embeddings, dim=-1)
    teachers = F.normalize(output.teacher_embeddings, dim=-1)
    expected = F.cross_entropy(users @ teachers.t() / 0.07, torch.arange(5))
    torch.testing.assert_close(output.distillation_loss, expected)

    with pytest.raises(ValueError, match="At least one loss weight must be > 0"):
        LLMSRecConfig(retrieval_loss_weight=0, distillation_loss_weight=0, uniformity_loss_weight=0)
    with pytest.raises(ValueError, match="distillation_loss must be one of"):
        LLMSRecConfig(distillation_loss="kl")


# ---------------------------------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("kind", KINDS)
def test_scores_do_not_depend_on_the_batch_or_the_padding_side(make_tiny_model, kind):
    model = make_tiny_model(kind)
    processor = model.processor
    user = [3, 4, 5]
    others = [list(range(1, 13)), [9]]
    user_vectors, item_vectors = [], []
    for side in ("left", "right"):
        processor.tokenizer.padding_side = side
        for batch in ([user], [user, *others], [others[0], user, others[1]]):
            with torch.no_grad():
                user_vectors.append(model.encode_users(**processor(batch))[batch.index(user)])
        items = processor.encode_items([7, 1, 2, 3, 4, 5, 6])
        single = processor.encode_items([7])
        with torch.no_grad():
            item_vectors.append(model.encode_items(**items)[0])
            item_vectors.append(model.encode_items(**single)[0])
    for vector in user_vectors[1:]:
        torch.testing.assert_close(vector, user_vectors[0], atol=1e-5, rtol=1e-4)
    for vector in item_vectors[1:]:
        torch.testing.assert_close(vector, item_vectors[0], atol=1e-5, rtol=1e-4)


def test_explicit_position_ids_only_for_left_padded_batches(make_tiny_model):
    """Right-padded batches keep the backbone's default positions (rotary tables computed once, not per row)."""
    model = make_tiny_model("llama", group_prompts_by_length=False)  # one padded batch, one backbone call
    processor = model.processor
    seen = []
    hook = model.llm.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("position_ids")), with_kwargs=True
    )
    try:
        for side in ("right", "left"):
            processor.tokenizer.padding_side = side
            with torch.no_grad():
                model.encode_users(**processor([[3, 4, 5], list(range(1, 13))]))
    finally:
        hook.remove()
    assert seen[0] is None
    # the left-padded short prompt counts from its first real token, so it ends on a smaller position
    assert seen[1] is not None and seen[1][0, -1] < seen[1][1, -1] == seen[1].shape[1] - 1


# --------------------------------------------------------------------------------------------------- checkpoints
def test_save_load_gives_identical_scores_and_holds_no_backbone_tensor(tiny_model, tiny_backbone_dir, tmp_path):
    model = tiny_model
    with torch.no_grad():  # move away from the initialisation so that loading must restore the weights
        for parameter in trainable_parameters(model).values():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path)
    names = set(os.listdir(tmp_path))
    assert {
        "config.json",
        "model.safetensors",
        "modeling_llm_srec.py",
        "modeling_sasrec.py",
        "configuration_llm_srec.py",
        "configuration_sasrec.py",
        "processing_llm_srec.py",
        "catalog_llm_srec.py",
        "processor_config.json",
        "item_catalog.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_llm_srec.LLMSRecConfig",
        "AutoModel": "modeling_llm_srec.LLMSRecForRecommendation",
    }
    assert config["llm_name_or_path"] == str(tiny_backbone_dir("llama"))
    with safe_open(tmp_path / "model.safetensors", framework="pt") as handle:
        keys = set(handle.keys())
    assert not any(key.startswith("llm.") for key in keys)
    assert keys == {key for key in model.state_dict() if not key.startswith("llm.")}
    payload = sum(tensor.numel() * tensor.element_size() for key, tensor in model.state_dict().items() if key in keys)
    backbone = sum(p.numel() * p.element_size() for p in model.llm.parameters())
    size = os.path.getsize(tmp_path / "model.safetensors")
    assert payload <= size < payload + 16_384 and size < backbone

    histories = [[1, 2, 3], [10, 11]]
    with torch.no_grad():
        expected_users = model.encode_users(**model.processor(histories))
        expected_items = model.refresh_item_index()
    llm = AutoModel.from_pretrained(tiny_backbone_dir("llama"))
    for loaded in (
        LLMSRecForRecommendation.from_pretrained(tmp_path),
        AutoModel.from_pretrained(tmp_path),
        LLMSRecForRecommendation.from_pretrained(tmp_path, llm=llm),
    ):
        assert isinstance(loaded, LLMSRecForRecommendation) and not loaded.training
        assert loaded.processor.item_catalog == model.processor.item_catalog
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode_users(**loaded.processor(histories)), expected_users)
            torch.testing.assert_close(loaded.refresh_item_index(), expected_items)
        got, want = loaded.recommend([["I00", "I01"]], k=4)[0], model.recommend([["I00", "I01"]], k=4)[0]
        assert (got.item_ids, got.titles) == (want.item_ids, want.titles)
        torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(want.scores))

    half = LLMSRecForRecommendation.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert half.user_head[0].weight.dtype == torch.float32 and half.user_out_embedding.dtype == torch.float32
    with torch.no_grad():
        users = half.encode_users(**half.processor(histories))
    assert users.dtype == torch.float32
    torch.testing.assert_close(users, expected_users, atol=0.1, rtol=0.1)


def test_lora_trains_only_the_adapter_and_the_heads_and_its_tensors_round_trip(
    make_tiny_model, ordered_task, make_training_batch, tmp_path
):
    from peft import LoraConfig

    model = make_tiny_model("llama", lora_config=LoraConfig(**LORA))
    assert model.config.lora_config["target_modules"] == ["q_proj", "v_proj"]
    trainable = trainable_parameters(model)
    adapter = {name for name in trainable if name.startswith("llm.")}
    assert {name.split(".")[0] for name in trainable} == TRAINABLE | {"llm"}
    assert len(adapter) == 8 and all(".lora_A." in name or ".lora_B." in name for name in adapter)
    frozen = frozen_snapshot(model)
    batch = make_training_batch(
        model, ordered_task["histories"][:6], ordered_task["targets"][:6], ordered_task["negatives"][:6]
    )
    optimizer = torch.optim.Adam(trainable.values(), lr=1e-2)
    model.train()
    assert model.llm.training  # LoRA (and its dropout) trains in training mode
    for _ in range(3):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert all(torch.equal(tensor, frozen[name]) for name, tensor in frozen_snapshot(model).items())
    assert all(trainable[name].abs().sum() > 0 for name in adapter if ".lora_B." in name)  # B starts at zero

    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as handle:
        saved = {key: handle.get_tensor(key) for key in handle.keys()}
    assert {key for key in saved if key.startswith("llm.")} == adapter
    loaded = LLMSRecForRecommendation.from_pretrained(tmp_path)
    loaded_state = loaded.state_dict()
    assert all(torch.equal(loaded_state[name], trainable[name].detach()) for name in adapter)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def test_a_quantized_backbone_gets_kbit_preparation(tiny_backbone_dir, tiny_config_factory, make_tiny_processor):
    """transformers marks quantized models with ``hf_quantizer``; bitsandbytes needs a GPU, so a bf16 backbone
    carries a stand-in marker here to check that peft's k-bit preparation runs (fp32 norms and embeddings)."""
    llm = AutoModel.from_pretrained(tiny_backbone_dir("llama"), dtype=torch.bfloat16)
    llm.hf_quantizer = types.SimpleNamespace(name="stand-in")
    config = tiny_config_factory("llama")
    torch.manual_seed(0)
    model = LLMSRecForRecommendation(config, llm=llm, processor=make_tiny_processor("llama", config)).eval()
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.llm.parameters())
    with torch.no_grad():
        assert model.encode_users(**model.processor([[1, 2]])).shape == (1, 16)


# ------------------------------------------------------------------------------------------------------ recommend
def test_recommend_ranks_the_whole_catalog_and_excludes_the_history(tiny_model, tiny_catalog):
    model = tiny_model
    histories = [["I00", "I01", "I02"], ["I05"]]
    recommendations = model.recommend(histories, k=5)
    with torch.no_grad():
        users = model.encode_users(**model.processor([[1, 2, 3], [6]]))
        scores = users @ model.refresh_item_index().t()
    scores[0, [0, 1, 2]] = float("-inf")
    scores[1, 5] = float("-inf")
    for recommendation, row in zip(recommendations, scores):
        assert isinstance(recommendation, Recommendation)
        top = row.topk(5)
        assert recommendation.item_ids == tiny_catalog.to_external((top.indices + 1).tolist())
        assert recommendation.titles == [tiny_catalog.title(i) for i in (top.indices + 1).tolist()]
        torch.testing.assert_close(torch.tensor(recommendation.scores), top.values)
        assert recommendation.scores == sorted(recommendation.scores, reverse=True)
    assert not {"I00", "I01", "I02"} & set(recommendations[0].item_ids)
    everything = model.recommend(histories, k=100)
    assert [len(r.item_ids) for r in everything] == [13, 15]
    assert len(model.recommend(histories, k=100, exclude_history=False)[0].item_ids) == 16
    timed = model.recommend([["I00", "I01"]], k=3, timestamps=[[1614859200, 1620689400]])
    assert timed[0].scores != model.recommend([["I00", "I01"]], k=3)[0].scores  # the dates are in the prompt


def test_the_item_index_is_cached_until_refreshed_or_trained(tiny_model, monkeypatch):
    model = tiny_model
    calls = []
    original = model.encode_items
    monkeypatch.setattr(model, "encode_items", lambda *a, **k: calls.append(1) or original(*a, **k))
    model.recommend([["I00"]], k=2)
    model.recommend([["I03"]], k=2)
    assert len(calls) == 1  # 16 items fit one batch of 64: built once, then reused
    model.train()
    model.eval()
    model.recommend([["I00"]], k=2)
    assert len(calls) == 2  # training invalidated it
    model.refresh_item_index(batch_size=5)
    assert len(calls) == 6


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_batches_raise_clear_errors(tiny_model, task_batch):
    model = tiny_model
    processor = model.processor
    encoded = processor([[1, 2, 3]])
    ids, mask, items = encoded["input_ids"], encoded["attention_mask"], encoded["history_item_ids"]
    with pytest.raises(ValueError, match=r"Mismatched \[HistoryEmb\] slots.*\[3\] slots but \[2\]"):
        model.encode_users(ids, mask, items[:, :2])
    with pytest.raises(ValueError, match=r"Unknown history item ids \[99\]"):
        model.encode_users(ids, mask, torch.tensor([[1, 2, 99]]))
    with pytest.raises(ValueError, match=r"must contain \[UserOut\] exactly once"):
        model.encode_users(ids.masked_fill(ids == processor.user_token_id, processor.pad_token_id), mask, items)
    with pytest.raises(ValueError, match="outside the backbone's vocabulary"):
        model.encode_users(
            torch.cat([ids, torch.tensor([[10_000]])], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1), items
        )
    with pytest.raises(ValueError, match="encode_items needs item_ids"):
        model.encode_items(ids, mask)
    small = subset_batch(task_batch, 2)
    with pytest.raises(ValueError, match="need candidate_input_ids"):
        model(**{key: small[key] for key in ("input_ids", "attention_mask", "history_item_ids", "labels")})
    with pytest.raises(ValueError, match="need sasrec_input_ids"):
        model(**{key: value for key, value in small.items() if key != "sasrec_input_ids"})
    with pytest.raises(ValueError, match=r"Got 8 candidate prompts .* \(expected 6\)"):
        model(**{**small, "candidate_item_ids": small["candidate_item_ids"][:, :3]})


def test_bad_recommend_calls_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"Unknown external item ids: \['nope'\]"):
        tiny_model.recommend([["I00", "nope"]])
    with pytest.raises(ValueError, match=r"Empty histories at positions \[1\]"):
        tiny_model.recommend([["I00"], []])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        tiny_model.recommend([["I00"]], k=0)
    with pytest.raises(ValueError, match="list of external-id lists"):
        tiny_model.recommend(["I00", "I01"])


def test_the_backbone_must_expose_hidden_states(tiny_model):
    vocabulary = tiny_model.llm.get_input_embeddings().num_embeddings
    def logits_only(inputs_embeds: torch.Tensor, **kwargs) -> CausalLMOutput:
        return CausalLMOutput(logits=inputs_embeds.new_zeros(inputs_embeds.shape[:2] + (vocabulary,)))

    tiny_model.llm.forward = logits_only
    with pytest.raises(ValueError, match="returned no last_hidden_state"):
        tiny_model.encode_users(**tiny_model.processor([[1]]))


def test_mismatched_parts_are_rejected(
    tiny_model, tiny_backbone_dir, tiny_config_factory, make_tiny_processor, tiny_catalog
):
    config = tiny_config_factory("llama")
    llm = AutoModel.from_pretrained(tiny_backbone_dir("llama"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir("llama"))
    short_catalog = ItemCatalog(tiny_catalog.external_ids[:15], tiny_catalog.titles[:15])
    with pytest.raises(ValueError, match="catalog has 15 items but the SASRec teacher's item table has 16"):
        tiny_model.processor = LLMSRecProcessor.from_config(config, tokenizer, short_catalog)
    with pytest.raises(ValueError, match=r"processor's history_length differ\(s\) from the model config"):
        tiny_model.processor = LLMSRecProcessor(tokenizer, tiny_catalog, history_length=5)
    with pytest.raises(ValueError, match="does not match config.sasrec_config"):
        LLMSRecForRecommendation(config, llm=llm, sasrec=SASRecModel(SASRecConfig(num_items=10, hidden_size=16)))
    with pytest.raises(ValueError, match="built for another backbone"):
        wider = LLMSRecConfig(llm_config=LlamaConfig(hidden_size=64), sasrec_config=config.sasrec_config)
        LLMSRecForRecommendation(wider, llm=llm)
    with pytest.raises(ValueError, match="llm_config is not set"):
        LLMSRecForRecommendation(LLMSRecConfig(sasrec_config=config.sasrec_config))
    with pytest.raises(ValueError, match="exceeds the backbone's max_position_embeddings"):
        LLMSRecForRecommendation(tiny_config_factory("llama", max_prompt_length=4096), llm=llm)
    bare = LLMSRecForRecommendation(config, llm=llm)
    with pytest.raises(ValueError, match="does not know the special-token ids"):
        bare.encode_users(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="needs an attached processor"):
        bare.recommend([["I00"]])
    bare.processor = make_tiny_processor("llama", config)
    assert bare._special_token_ids()[1] == bare.processor.user_token_id
    assert not hasattr(bare.config, "user_token_id")  # the token ids have one owner: the processor


def test_config_round_trip_and_sub_config_errors(tiny_config_factory, tmp_path):
    config = tiny_config_factory("gpt2", lora_config={"r": 2, "target_modules": {"c_attn"}}, history_length=7)
    config.save_pretrained(tmp_path)
    loaded = LLMSRecConfig.from_pretrained(tmp_path)
    assert loaded.llm_config.to_diff_dict() == config.llm_config.to_diff_dict()
    assert loaded.sasrec_config.to_dict() == config.sasrec_config.to_dict()
    assert loaded.lora_config == {"r": 2, "target_modules": ["c_attn"]} and loaded.history_length == 7
    assert type(loaded.llm_config).__name__ == "GPT2Config"
    with pytest.raises(ValueError, match="needs its 'model_type'"):
        LLMSRecConfig(llm_config={"hidden_size": 8})
    with pytest.raises(ValueError, match="sasrec_config must be None, a dict or a SASRecConfig"):
        LLMSRecConfig(sasrec_config=LlamaConfig())
    with pytest.raises(ValueError, match="history_length must be a positive integer"):
        LLMSRecConfig(history_length=0)
