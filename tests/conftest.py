"""Shared fixtures: a tiny item catalog, tiny random-initialised backbones (Llama, GPT-2, BERT) with tokenizers
trained on the fly, a tiny SASRec teacher, processors and LLM-SRec models built on them.

Everything is built offline in temporary folders. Backbone folders are built once per session; models, teachers
and processors are built fresh for every test (they are cheap) so a test may train or mutate them freely.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel, AutoTokenizer
from transformers import logging as transformers_logging
from transformers.utils import logging as transformers_utils_logging

from llm_srec import (
    ItemCatalog,
    LLMSRecConfig,
    LLMSRecForRecommendation,
    LLMSRecProcessor,
    SASRecConfig,
    SASRecModel,
    build_tiny_backbone,
)

transformers_logging.set_verbosity_error()
transformers_utils_logging.disable_progress_bar()
# Tiny models gain nothing from intra-op threads, and OpenMP's spin-waiting makes many small ops up to 20x slower
# when the CPU is shared with other processes (measured: 3 s vs 56 s for the same 60 training steps).
torch.set_num_threads(1)

TINY_TITLES = [
    "Red Wool Scarf",
    "Blue Denim Jacket",
    "Green Garden Hose",
    "Yellow Rain Boots",
    "Purple Yoga Mat",
    "Orange Juice Press",
    "Silver Desk Lamp",
    "Golden Picture Frame",
    "Black Coffee Grinder",
    "White Cotton Sheets",
    "Pink Ceramic Mug",
    "Brown Leather Wallet",
    "Grey Wool Socks",
    "Cyan Water Bottle",
    "Navy Canvas Backpack",
    "Teal Bath Towel",
]
TINY_NUM_ITEMS = len(TINY_TITLES)
# Subprocess tests wait this long before calling a run hung: a guard against hangs, not a speed check, so that a
# loaded CI machine never fails a test for being slow.
HANG_GUARD_S = 3600
# Small but structurally complete heads: d' and the hidden sizes are shrunk, the layer shapes are the paper's.
TINY_HEAD_SIZES = {"head_hidden_size": 32, "embedding_size": 16, "cf_hidden_size": 16}
RUN_TIME_OPTIONS = ("item_prefix_cache_mb", "group_prompts_by_length")


def _shift(item: int, offset: int) -> int:
    """Item ``offset`` steps after ``item`` in the cyclic order 1 -> 2 -> ... -> 16 -> 1."""
    return (item - 1 + offset) % TINY_NUM_ITEMS + 1


@pytest.fixture(scope="session")
def tiny_catalog() -> ItemCatalog:
    """16 items with external ids ``I00..I15`` and distinct titles."""
    return ItemCatalog([f"I{index:02d}" for index in range(TINY_NUM_ITEMS)], TINY_TITLES)


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory ``kind -> folder`` of a tiny random-initialised backbone (``"llama"``, ``"gpt2"`` or ``"bert"``)."""
    built: dict[str, Path] = {}

    def build(kind: str = "llama") -> Path:
        if kind not in built:
            built[kind] = build_tiny_backbone(kind, TINY_TITLES, tmp_path_factory.mktemp(f"backbone-{kind}"), seed=0)
        return built[kind]

    return build


@pytest.fixture(scope="session")
def tiny_sasrec_config() -> SASRecConfig:
    return SASRecConfig(
        num_items=TINY_NUM_ITEMS,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=1,
        max_position_embeddings=20,
    )


@pytest.fixture
def tiny_sasrec(tiny_sasrec_config: SASRecConfig) -> SASRecModel:
    torch.manual_seed(0)
    return SASRecModel(tiny_sasrec_config).eval()


@pytest.fixture
def tiny_config_factory(tiny_backbone_dir, tiny_sasrec_config) -> Callable[..., LLMSRecConfig]:
    """Factory ``(kind="llama", **overrides) -> LLMSRecConfig`` for a tiny backbone and the tiny teacher."""

    def build(kind: str = "llama", **overrides: Any) -> LLMSRecConfig:
        settings = {**TINY_HEAD_SIZES, **overrides}
        return LLMSRecConfig.from_backbone(str(tiny_backbone_dir(kind)), sasrec_config=tiny_sasrec_config, **settings)

    return build


@pytest.fixture
def make_tiny_processor(tiny_backbone_dir, tiny_catalog, tiny_config_factory) -> Callable[..., LLMSRecProcessor]:
    """Factory ``(kind="llama", config=None) -> LLMSRecProcessor`` with a freshly loaded tokenizer."""

    def build(kind: str = "llama", config: LLMSRecConfig | None = None) -> LLMSRecProcessor:
        config = config if config is not None else tiny_config_factory(kind)
        tokenizer = AutoTokenizer.from_pretrained(tiny_backbone_dir(kind))
        return LLMSRecProcessor.from_config(config, tokenizer, tiny_catalog)

    return build


@pytest.fixture
def tiny_processor(make_tiny_processor) -> LLMSRecProcessor:
    return make_tiny_processor("llama")


@pytest.fixture
def make_tiny_model(
    tiny_backbone_dir, tiny_config_factory, make_tiny_processor, tiny_sasrec_config
) -> Callable[..., LLMSRecForRecommendation]:
    """Factory ``(kind="llama", seed=0, **config_overrides) -> LLMSRecForRecommendation`` (eval mode) with its
    processor attached, a seeded random teacher and the backbone loaded from the tiny folder; the model's run-time
    options (``item_prefix_cache_mb``, ``group_prompts_by_length``) go to the model, not the config."""

    def build(kind: str = "llama", seed: int = 0, **overrides: Any) -> LLMSRecForRecommendation:
        run_time = {name: overrides.pop(name) for name in RUN_TIME_OPTIONS if name in overrides}
        config = tiny_config_factory(kind, **overrides)
        processor = make_tiny_processor(kind, config)
        llm = AutoModel.from_pretrained(tiny_backbone_dir(kind))
        torch.manual_seed(seed)
        teacher = SASRecModel(tiny_sasrec_config)
        return LLMSRecForRecommendation(config, llm=llm, sasrec=teacher, processor=processor, **run_time).eval()

    return build


@pytest.fixture
def tiny_model(make_tiny_model) -> LLMSRecForRecommendation:
    return make_tiny_model("llama")


@pytest.fixture(scope="session")
def ordered_task() -> dict[str, list]:
    """A small ordered task: item ``i`` is always followed by item ``i + 1`` (cyclically over the 16 items).

    One user per start item, with 4-7 history items; the target is the next item in the order and the three
    negatives lie 2, 4 and 6 steps after it, so they are never in the history (nor the target).
    """
    histories, targets, negatives = [], [], []
    for start in range(1, TINY_NUM_ITEMS + 1):
        length = 4 + start % 4
        history = [_shift(start, step) for step in range(length)]
        target = _shift(history[-1], 1)
        histories.append(history)
        targets.append(target)
        negatives.append([_shift(target, offset) for offset in (2, 4, 6)])
    return {"histories": histories, "targets": targets, "negatives": negatives}


@pytest.fixture
def make_training_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory ``(model, histories, targets, negatives) -> batch`` holding every key `forward` consumes.

    The target is candidate 0 (``labels`` are zeros), as the collator produces it.
    """

    def build(
        model: LLMSRecForRecommendation,
        histories: list[list[int]],
        targets: list[int],
        negatives: list[list[int]],
    ) -> dict[str, torch.Tensor]:
        processor = model.processor
        users = processor(histories)
        candidates = [[target, *row] for target, row in zip(targets, negatives)]
        items = processor.encode_items([item for row in candidates for item in row])
        maxlen = model.sasrec.config.max_position_embeddings
        sasrec_input_ids = torch.tensor([[0] * (maxlen - len(h[-maxlen:])) + h[-maxlen:] for h in histories])
        return {
            "input_ids": users["input_ids"],
            "attention_mask": users["attention_mask"],
            "history_item_ids": users["history_item_ids"],
            "sasrec_input_ids": sasrec_input_ids,
            "candidate_input_ids": items["input_ids"],
            "candidate_attention_mask": items["attention_mask"],
            "candidate_item_ids": torch.tensor(candidates),
            "labels": torch.zeros(len(histories), dtype=torch.long),
        }

    return build
