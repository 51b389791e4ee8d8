"""Training the models the probes compare with: a model's shuffled-training counterpart and its ablations.

Why a module of its own: these call the training pipeline, which itself imports the evaluation package, so they must
not be imported by `llm_srec.evaluation` (import them from here). Each counterpart is trained "the same way" as the
probed model: same config (plus the ablation's overrides), same frozen teacher and backbone, and the training
arguments recorded in the probed model's folder (``training_args.json``), so the only difference is the one probed.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from llm_srec.data import RecommendationData, shuffle_histories
from llm_srec.hub import TRAINING_ARGS_FILE
from llm_srec.modeling import LLMSRecConfig, LLMSRecForRecommendation, SASRecModel

from .arguments import LLMSRecTrainingArguments, RankingTrainingArguments, SASRecTrainingArguments
from .pipeline import CHECKPOINTS_DIR, pretrain_sasrec, train_llm_srec
from .recipes import ablation_config_overrides

logger = logging.getLogger(__name__)

# Config fields that describe the backbone / teacher / tokenizer rather than the recipe: rebuilt by the pipeline.
_NOT_RECIPE = frozenset({"self", "kwargs", "llm_name_or_path", "llm_config", "sasrec_config"})
# Recorded arguments that name the original run's folders: they default again for the new run.
_RUN_SPECIFIC = frozenset({"output_dir", "logging_dir", "run_name", "resume_from_checkpoint"})
# Sub-folders of an ablation's output folder: trained on the original and on the shuffled training histories.
ABLATION_VARIANTS = ("original", "shuffled")


def shuffled_training_data(data: RecommendationData, seed: int) -> RecommendationData:
    """``data`` with every training history shuffled once (§2.3.1: once before training, not every epoch).

    Only the train split changes (`shuffle_histories`: ids permuted per user with ``[seed, user_index]``, timestamps
    and target in place). Validation and test keep their original order: model selection and the final ranking are
    on original sequences, as the paper evaluates the shuffled-trained models. The dataset name records the shuffle,
    so the trained model's card says what it was trained on.
    """
    splits = DatasetDict({**data.splits, "train": shuffle_histories(data.splits["train"], seed)})
    name = data.info.get("name", "data")
    info = {**data.info, "name": f"{name} (training histories shuffled once, seed={seed})"}
    return RecommendationData(splits, data.user_sequences, data.catalog, data.drop_report, info)


def recorded_training_arguments(
    model: LLMSRecForRecommendation | SASRecModel, model_dir: str | os.PathLike | None, output_dir: str | os.PathLike
) -> RankingTrainingArguments:
    """The training arguments recorded in ``model_dir/training_args.json`` (the paper's defaults when absent),
    writing checkpoints to ``output_dir/checkpoints``."""
    cls = LLMSRecTrainingArguments if isinstance(model, LLMSRecForRecommendation) else SASRecTrainingArguments
    recorded: dict[str, Any] = {}
    path = Path(model_dir) / TRAINING_ARGS_FILE if model_dir is not None else None
    if path is not None and path.is_file():
        init_fields = {field.name for field in dataclasses.fields(cls) if field.init}
        recorded = {
            key: value for key, value in json.loads(path.read_text(encoding="utf-8")).items()
            if key in init_fields and key not in _RUN_SPECIFIC
        }
        if recorded.get("num_train_negatives", 0) is None:  # 0.1.0 recorded None for "the config's", then 3
            del recorded["num_train_negatives"]
    else:
        logger.warning("no %s recorded with the model: the counterpart trains with the paper's defaults",
                       TRAINING_ARGS_FILE)
    return cls(output_dir=os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR), **recorded)


def recipe_config_kwargs(config: LLMSRecConfig) -> dict[str, Any]:
    """The `LLMSRecConfig` arguments that define the training recipe (heads, prompts, losses), without the backbone
    and teacher, which `train_llm_srec` fills in again."""
    names = set(inspect.signature(LLMSRecConfig.__init__).parameters) - _NOT_RECIPE
    return {name: copy.deepcopy(getattr(config, name)) for name in sorted(names)}


def train_counterpart(
    model: LLMSRecForRecommendation | SASRecModel,
    data: RecommendationData,
    output_dir: str | os.PathLike,
    args: RankingTrainingArguments,
    config_overrides: Mapping[str, Any] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> LLMSRecForRecommendation | SASRecModel:
    """Train ``model``'s recipe again on ``data`` (e.g. `shuffled_training_data`) into ``output_dir``.

    LLM-SRec: same backbone (``config.llm_name_or_path``), a copy of the same frozen teacher (so an LLM-SRec trained
    on shuffled histories distils the teacher's view of the shuffled histories), the recipe config plus
    ``config_overrides``. SASRec: the same config from scratch (``config_overrides`` must be empty).
    """
    if isinstance(model, LLMSRecForRecommendation):
        return train_llm_srec(
            data,
            copy.deepcopy(model.sasrec),
            model.config.llm_name_or_path,
            output_dir,
            args=args,
            config_kwargs={**recipe_config_kwargs(model.config), **dict(config_overrides or {})},
            backbone_kwargs=backbone_kwargs,
        )
    if config_overrides:
        raise ValueError(f"config overrides {sorted(config_overrides)} are LLM-SRec ablations; this is a SASRec model")
    return pretrain_sasrec(data, output_dir, args=args, config=copy.deepcopy(model.config))


def train_shuffled_counterpart(
    model: LLMSRecForRecommendation | SASRecModel,
    data: RecommendationData,
    output_dir: str | os.PathLike,
    seed: int = 0,
    model_dir: str | os.PathLike | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> LLMSRecForRecommendation | SASRecModel:
    """``model``'s recipe trained on once-shuffled training histories (§2.3.1), saved to ``output_dir``; training
    arguments from ``model_dir`` (see `recorded_training_arguments`)."""
    args = recorded_training_arguments(model, model_dir, output_dir)
    shuffled = shuffled_training_data(data, seed)
    return train_counterpart(model, shuffled, output_dir, args, backbone_kwargs=backbone_kwargs)


def train_ablation(
    model: LLMSRecForRecommendation,
    data: RecommendationData,
    ablation: str,
    output_dir: str | os.PathLike,
    seed: int = 0,
    model_dir: str | os.PathLike | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> tuple[LLMSRecForRecommendation, LLMSRecForRecommendation]:
    """Train an ablation of ``model`` (`ABLATIONS`) on the original and on the shuffled training histories (Table 8's
    "Original" and "Shuffle" rows), into ``output_dir/original`` and ``output_dir/shuffled`` (`ABLATION_VARIANTS`)."""
    if not isinstance(model, LLMSRecForRecommendation):
        raise ValueError("ablations change LLM-SRec's losses; the probed model is not an LLM-SRec model")
    overrides = ablation_config_overrides(ablation)
    trained = []
    for name, variant in zip(ABLATION_VARIANTS, (data, shuffled_training_data(data, seed))):
        folder = Path(output_dir) / name
        args = recorded_training_arguments(model, model_dir, folder)
        trained.append(train_counterpart(model, variant, folder, args, overrides, backbone_kwargs))
    return trained[0], trained[1]


__all__ = [
    "ABLATION_VARIANTS",
    "recipe_config_kwargs",
    "recorded_training_arguments",
    "shuffled_training_data",
    "train_ablation",
    "train_counterpart",
    "train_shuffled_counterpart",
]
