"""GPU-only training paths: bf16 and fp16 mixed precision and 8-/4-bit (bitsandbytes) backbones. Skipped cleanly
without CUDA (and, for quantisation, without bitsandbytes)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BitsAndBytesConfig

from conftest import TINY_HEAD_SIZES
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.training import LLMSRecTrainer, LLMSRecTrainingArguments
from llm_srec.training.pipeline import build_llm_srec
from test_training import assert_no_pickles, make_teacher

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
NEGATIVES = 10


@pytest.fixture(scope="module")
def small_data():
    config = SyntheticConfig(num_users=40, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    return build_recommendation_data(generate_synthetic(config))


def train_briefly(model, data, output_dir, **overrides) -> LLMSRecTrainer:
    args = LLMSRecTrainingArguments(
        output_dir=str(output_dir), max_steps=4, per_device_train_batch_size=8, per_device_eval_batch_size=16,
        learning_rate=1e-3, num_eval_negatives=NEGATIVES, eval_every_epoch_fraction=None, eval_steps=2, save_steps=2,
        early_stopping_patience=None, disable_tqdm=True, report_to="none", seed=0, logging_steps=1, **overrides,
    )
    trainer = LLMSRecTrainer(model, args, train_dataset=data.splits["train"], eval_dataset=data.splits["validation"])
    trainer.train()
    return trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_gpu(precision, small_data, tiny_backbone_dir, tmp_path):
    model = build_llm_srec(small_data, make_teacher(), tiny_backbone_dir("llama"),
                           config_kwargs={**TINY_HEAD_SIZES, "history_length": 5})
    trainer = train_briefly(model.cuda(), small_data, tmp_path, **{precision: True})
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert trainer.state.best_metric is not None
    assert_no_pickles(tmp_path)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_backbone_trains_and_checkpoints_hold_no_backbone(bits, small_data, tiny_backbone_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    quantization = (BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else
                    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                       bnb_4bit_compute_dtype=torch.bfloat16))
    model = build_llm_srec(small_data, make_teacher(), tiny_backbone_dir("llama"),
                           config_kwargs={**TINY_HEAD_SIZES, "history_length": 5},
                           backbone_kwargs={"quantization_config": quantization, "device_map": {"": 0}})
    assert getattr(model.llm, "is_quantized", False)
    trainer = train_briefly(model, small_data, tmp_path, bf16=True)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert all(math.isfinite(loss) for loss in losses)
    state = trainer.model.checkpoint_state_dict()
    assert state and not any(key.startswith("llm.") for key in state)
    assert_no_pickles(tmp_path)


def test_prefix_cache_and_length_groups_keep_the_scores_on_gpu_in_bf16(make_tiny_model):
    """The cached item path and the length groups on CUDA with a bf16 backbone: same vectors to bf16 tolerance."""
    model = make_tiny_model("llama").cuda()
    model.llm.to(torch.bfloat16)
    batch = model.processor.encode_items(list(range(1, 17))).to("cuda")
    vectors = []
    for cache_mb, grouped in ((0, False), (64, True), (64, True)):  # off, cold, warm
        model.item_prefix_cache_mb, model.group_prompts_by_length = cache_mb, grouped
        with torch.no_grad():
            vectors.append(model.encode_items(batch["input_ids"], batch["attention_mask"], batch["item_ids"]))
    assert model._item_prefix_cache.hits == 16
    for other in vectors[1:]:
        torch.testing.assert_close(other, vectors[0], atol=2e-2, rtol=2e-2)
