"""Folders saved by earlier versions keep loading: `tests/fixtures/llm_srec_0_1_0` is a tiny LLM-SRec folder written
by version 0.1.0 (heads and teacher set to seeded random values, its item index, processor files) on the tiny Llama
backbone of conftest.py, with the recommendations that version gave (`expected.json`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from llm_srec import LLMSRecForRecommendation
from llm_srec.modeling.configuration_llm_srec import LEGACY_KEYS

FOLDER = Path(__file__).parent / "fixtures" / "llm_srec_0_1_0"


@pytest.fixture
def saved_by_0_1_0(tiny_backbone_dir) -> LLMSRecForRecommendation:
    return LLMSRecForRecommendation.from_pretrained(FOLDER, llm=AutoModel.from_pretrained(tiny_backbone_dir("llama")))


def test_a_folder_saved_by_0_1_0_loads_every_tensor(saved_by_0_1_0: LLMSRecForRecommendation) -> None:
    saved = load_file(FOLDER / "model.safetensors")
    loaded = saved_by_0_1_0.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(loaded[key], tensor), key


def test_a_folder_saved_by_0_1_0_recommends_as_it_did(saved_by_0_1_0: LLMSRecForRecommendation) -> None:
    expected = json.loads((FOLDER / "expected.json").read_text(encoding="utf-8"))
    assert saved_by_0_1_0.item_index is not None  # the saved index still matches the loaded model
    recommendations = saved_by_0_1_0.recommend(expected["histories"], k=5)
    for recommendation, reference in zip(recommendations, expected["recommendations"], strict=True):
        assert recommendation.item_ids == reference["item_ids"]
        assert recommendation.scores == pytest.approx(reference["scores"], abs=1e-6)
    saved_by_0_1_0.refresh_item_index()  # rebuilt from the loaded heads and backbone: the same ranking
    assert [r.item_ids for r in saved_by_0_1_0.recommend(expected["histories"], k=5)] == [
        reference["item_ids"] for reference in expected["recommendations"]]


def test_settings_with_a_new_owner_are_taken_from_it(tiny_backbone_dir) -> None:
    """0.1.0 kept the token ids, the training negatives and the run-time options in config.json; they are dropped
    on load: the processor, the training arguments and `from_pretrained`'s keyword arguments own them now."""
    saved = json.loads((FOLDER / "config.json").read_text(encoding="utf-8"))
    assert (saved["item_prefix_cache_mb"], saved["group_prompts_by_length"], saved["num_train_negatives"]) == (7, False, 5)
    llm = AutoModel.from_pretrained(tiny_backbone_dir("llama"))
    model = LLMSRecForRecommendation.from_pretrained(FOLDER, llm=llm, item_prefix_cache_mb=0,
                                                     group_prompts_by_length=False)
    assert (model.item_prefix_cache_mb, model.group_prompts_by_length) == (0, False)
    assert not any(hasattr(model.config, key) for key in LEGACY_KEYS)
    assert model._special_token_ids() == (saved["history_token_id"], saved["user_token_id"], saved["item_token_id"],
                                          saved["llm_pad_token_id"])
    assert (LLMSRecForRecommendation.from_pretrained(FOLDER, llm=llm).item_prefix_cache_mb, model.config.recipe) == (
        1024, "paper")
