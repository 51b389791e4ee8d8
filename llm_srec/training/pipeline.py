"""High-level steps the CLI and the notebooks call: pre-train SASRec, train LLM-SRec, evaluate and load models.

Why here: each step is "build the model, run the trainer, save the best model with its card, evaluate it on test",
and the CLI, the demo and the notebooks must do it identically. Every function runs on every process of an
`accelerate launch` job (training and evaluation are collective); only the main process writes files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, set_seed

from llm_srec.data import RecommendationData
from llm_srec.evaluation.metrics import PROTOCOLS
from llm_srec.evaluation.ranking import NestedMetrics, RankingEvaluator
from llm_srec.hub import write_model_card
from llm_srec.modeling import LLMSRecConfig, LLMSRecForRecommendation, LLMSRecProcessor, SASRecConfig, SASRecModel
from llm_srec.modeling.saving_llm_srec import read_json

from .arguments import LLMSRecTrainingArguments, RankingTrainingArguments, SASRecTrainingArguments
from .recipes import DEFAULT_RECIPE, Recipe, get_recipe
from .sasrec_trainer import SASRecTrainer
from .trainer import LLMSRecTrainer, RankingTrainer

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"


def load_data(data: RecommendationData | str | os.PathLike) -> RecommendationData:
    """A `RecommendationData`, or the folder `llm-srec prepare-data` wrote (`RecommendationData.save_to_disk`)."""
    if isinstance(data, RecommendationData):
        return data
    return RecommendationData.load_from_disk(data)


def load_model(path: str | os.PathLike, **backbone_kwargs: Any) -> SASRecModel | LLMSRecForRecommendation:
    """Load a saved SASRec or LLM-SRec folder (picked by ``config.json``'s ``model_type``); for LLM-SRec,
    ``backbone_kwargs`` (``dtype``, ``quantization_config``, ``device_map`` ...) go to the backbone's loading."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a saved model folder (no config.json)")
    model_type = read_json(config_file).get("model_type")
    if model_type == SASRecConfig.model_type:
        if backbone_kwargs:
            raise ValueError(f"backbone options {sorted(backbone_kwargs)} do not apply to a SASRec model")
        return SASRecModel.from_pretrained(path).eval()
    if model_type == LLMSRecConfig.model_type:
        return LLMSRecForRecommendation.from_pretrained(path, **backbone_kwargs)
    raise ValueError(f"{config_file} has model_type {model_type!r}; expected 'sasrec' or 'llm_srec'")


def check_catalog(model: SASRecModel | LLMSRecForRecommendation, data: RecommendationData, name: str = "the model"
                  ) -> None:
    """Raise a ValueError when ``model`` was trained on another item catalog than ``data``'s: the item count, the
    teacher's recorded `ItemCatalog.fingerprint` (SASRec folders from `pretrain_sasrec`) and an LLM-SRec model's
    processor catalog must all match, or every metric would silently rank the wrong items."""
    teacher = model.sasrec if isinstance(model, LLMSRecForRecommendation) else model
    if teacher.config.num_items != data.num_items:
        raise ValueError(f"{name} knows {teacher.config.num_items} items but the data has {data.num_items}")
    recorded, actual = teacher.config.catalog_fingerprint, data.catalog.fingerprint()
    if recorded is not None and recorded != actual:
        raise ValueError(f"{name} was trained on another item catalog than the data (catalog fingerprint {recorded}, "
                         f"the data's {actual}): same item count, different items")
    processor = getattr(model, "processor", None)
    if processor is not None and processor.item_catalog is not None and processor.item_catalog != data.catalog:
        raise ValueError(f"{name} was trained on another item catalog than the data (its processor's catalog differs)")


def evaluate_model(
    model: SASRecModel | LLMSRecForRecommendation,
    data: RecommendationData,
    split: str = "test",
    protocols: Sequence[str] = PROTOCOLS,
    num_negatives: int = 99,
    seed: int = 0,
    max_users: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> NestedMetrics:
    """``{protocol label: {metric: value}}`` of ``model`` on ``data.splits[split]`` (run on every process; the model
    stays where it is: place it on ``PartialState().device`` first in a distributed job)."""
    if split not in data.splits:
        raise ValueError(f"unknown split {split!r}; the data has {sorted(data.splits)}")
    check_catalog(model, data)
    evaluator = RankingEvaluator(
        data.splits[split], data.num_items, protocols, num_negatives, seed, max_users, batch_size
    )
    return evaluator.evaluate(model, show_progress=show_progress, description=f"Ranking ({split})")


def _train(
    trainer_class: type[RankingTrainer],
    model: SASRecModel | LLMSRecForRecommendation,
    args: RankingTrainingArguments,
    data: RecommendationData,
    output_dir: str | os.PathLike,
    evaluate_test: bool,
    model_card_kwargs: Mapping[str, Any] | None,
    resume_from_checkpoint: str | bool | None,
) -> SASRecModel | LLMSRecForRecommendation:
    """Train on the train split with validation-based selection, save the (best) model with its card into
    ``output_dir``, then rank every test user under both protocols and store them as the folder's metrics.json.
    ``resume_from_checkpoint=True`` resumes from the newest complete checkpoint in ``args.output_dir``."""
    trainer = trainer_class(
        model,
        args,
        train_dataset=data.splits["train"],
        eval_dataset=data.splits["validation"],
        model_card_kwargs={"data_statistics": data.statistics(), **dict(model_card_kwargs or {})},
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trained = trainer.accelerator.unwrap_model(trainer.model).eval()
    if isinstance(trained, LLMSRecForRecommendation) and trainer.accelerator.num_processes == 1:
        # saved as item_index.safetensors; the test ranking, `recommend` and `evaluate` reuse it
        trained.refresh_item_index(args.per_device_eval_batch_size)
    trainer.save_model(os.fspath(output_dir))
    if evaluate_test:
        metrics = evaluate_model(
            trained,
            data,
            "test",
            PROTOCOLS,
            args.num_eval_negatives,
            args.eval_seed,
            None,  # every test user: max_eval_users subsamples validation only
            args.per_device_eval_batch_size,
            show_progress=not args.disable_tqdm,
        )
        if args.should_save:
            write_model_card(output_dir, metrics=metrics)
    return trained


def _arguments(
    cls: type[RankingTrainingArguments], args: RankingTrainingArguments | None, output_dir: str | os.PathLike
) -> RankingTrainingArguments:
    if args is None:
        return cls(output_dir=os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR))
    if not isinstance(args, cls):
        raise ValueError(f"args must be {cls.__name__}, got {type(args).__name__}")
    return args


def pretrain_sasrec(
    data: RecommendationData | str | os.PathLike,
    output_dir: str | os.PathLike,
    args: SASRecTrainingArguments | None = None,
    config: SASRecConfig | Mapping[str, Any] | None = None,
    evaluate_test: bool = True,
    model_card_kwargs: Mapping[str, Any] | None = None,
    resume_from_checkpoint: str | bool | None = None,
) -> SASRecModel:
    """Pre-train the SASRec teacher, keep the best validation checkpoint, save it to ``output_dir`` with its card and
    test metrics (metrics.json).

    Args:
        data: the prepared data (or its folder).
        output_dir: where the final model goes; checkpoints go to ``args.output_dir`` (default
            ``output_dir/checkpoints``).
        args: `SASRecTrainingArguments` (the code's defaults when None).
        config: a `SASRecConfig` or its keyword arguments (``num_items`` is filled from the data).
        evaluate_test: rank the test users under both protocols at the end.
        model_card_kwargs: extra `write_model_card` inputs (``data_statistics`` defaults to the data's).
        resume_from_checkpoint: a checkpoint folder, or True for the last one in ``args.output_dir``.
    """
    data = load_data(data)
    args = _arguments(SASRecTrainingArguments, args, output_dir)
    if isinstance(config, SASRecConfig):
        if config.num_items != data.num_items:
            raise ValueError(f"config.num_items={config.num_items} but the data has {data.num_items} items")
    else:
        config = SASRecConfig(**{**dict(config or {}), "num_items": data.num_items})
    config.catalog_fingerprint = data.catalog.fingerprint()
    set_seed(args.seed)
    return _train(SASRecTrainer, SASRecModel(config), args, data, output_dir, evaluate_test, model_card_kwargs,
                  resume_from_checkpoint)


def build_llm_srec(
    data: RecommendationData,
    sasrec: SASRecModel | str | os.PathLike,
    backbone: str | os.PathLike,
    config_kwargs: Mapping[str, Any] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> LLMSRecForRecommendation:
    """A fresh LLM-SRec model: the backbone (Hub id or folder) and its tokenizer, the frozen teacher, new heads.

    Args:
        data: the prepared data; its catalog becomes the processor's.
        sasrec: the pre-trained teacher (or its folder).
        backbone: Hub id or local folder of the LLM; loaded with `AutoModel` (no LM head).
        config_kwargs: `LLMSRecConfig` options (head sizes, ``history_length`` ...).
        backbone_kwargs: `AutoModel.from_pretrained` options, e.g. ``dtype=torch.bfloat16`` or
            ``quantization_config=BitsAndBytesConfig(load_in_8bit=True)`` (GPU). ``gguf_file`` names a GGUF file in
            ``backbone``: it is de-quantised once into a cache folder (`llm_srec.backbones.gguf_backbone_folder`),
            which then serves as the backbone and is what the config records.
        seed: seeds the heads' initialisation.
    """
    teacher = sasrec if isinstance(sasrec, SASRecModel) else load_model(sasrec)
    if not isinstance(teacher, SASRecModel):
        raise ValueError(f"{sasrec} is not a SASRec model folder")
    check_catalog(teacher, data, "the SASRec teacher")
    options = dict(backbone_kwargs or {})
    backbone = os.fspath(backbone)
    gguf_file = options.pop("gguf_file", None)
    if gguf_file:
        from llm_srec.backbones import gguf_backbone_folder

        hub_options = {key: options[key] for key in ("revision", "cache_dir", "token") if key in options}
        backbone = os.fspath(gguf_backbone_folder(backbone, gguf_file, **hub_options))
    if os.path.isdir(backbone):  # the config records it: an absolute path reloads from any working directory
        backbone = os.path.abspath(backbone)
    config = LLMSRecConfig.from_backbone(backbone, sasrec_config=teacher.config, **dict(config_kwargs or {}))
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    processor = LLMSRecProcessor.from_config(config, tokenizer, data.catalog)
    if "dtype" not in options and config.backbone_dtype != "auto":
        options["dtype"] = config.backbone_dtype
    llm: PreTrainedModel = AutoModel.from_pretrained(backbone, **options)
    set_seed(seed)
    return LLMSRecForRecommendation(config, llm=llm, sasrec=teacher, processor=processor)


def history_cut_summary(processor: LLMSRecProcessor, split: Dataset, sample_size: int = 2000, seed: int = 0) -> str:
    """One sentence on how much of the history the prompt budget shows, over a seeded sample of ``split``'s users:
    a budget too small for ``history_length`` items silently drops the oldest ones from every prompt."""
    rows = split if len(split) <= sample_size else split.shuffle(seed=seed).select(range(sample_size))
    wanted = [min(len(history), processor.history_length) for history in rows["history"]]
    shown = [sum(1 for item in slots if item) for slots in processor(
        rows["history"], rows["history_timestamps"], return_tensors=None)["history_item_ids"]]
    total = sum(wanted)
    cut = total - sum(shown)
    users = sum(1 for want, got in zip(wanted, shown) if got < want)
    scope = f"{len(wanted)} training users" + (" (a seeded sample)" if len(split) > sample_size else "")
    if cut == 0:
        return (f"The {processor.max_prompt_length}-token prompt budget shows every history item (up to "
                f"{processor.history_length}) for all {scope}.")
    return (f"The {processor.max_prompt_length}-token prompt budget cuts {cut} of {total} history items "
            f"({cut / total:.1%}; the oldest first) for {users} of {scope}; raise max_prompt_length "
            "to show them.")


def train_llm_srec(
    data: RecommendationData | str | os.PathLike,
    sasrec: SASRecModel | str | os.PathLike,
    backbone: str | os.PathLike,
    output_dir: str | os.PathLike,
    args: LLMSRecTrainingArguments | None = None,
    config_kwargs: Mapping[str, Any] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    evaluate_test: bool = True,
    model_card_kwargs: Mapping[str, Any] | None = None,
    resume_from_checkpoint: str | bool | None = None,
    recipe: str | Recipe = DEFAULT_RECIPE,
) -> LLMSRecForRecommendation:
    """Train LLM-SRec on a frozen backbone and teacher, keep the best validation checkpoint, save it to
    ``output_dir`` (heads + teacher + processor, never the backbone) with its card and test metrics.

    Arguments as `build_llm_srec` and `pretrain_sasrec`. ``recipe`` (a name in `llm_srec.training.recipes.RECIPES`
    or a `Recipe`) sets the loss options under ``config_kwargs`` (which win) and, when ``args`` is None, the
    training arguments (checkpoints in ``output_dir/checkpoints``).
    """
    data = load_data(data)
    recipe = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    if args is None:
        args = recipe.training_arguments(output_dir=os.path.join(os.fspath(output_dir), CHECKPOINTS_DIR))
    args = _arguments(LLMSRecTrainingArguments, args, output_dir)
    model = build_llm_srec(data, sasrec, backbone, recipe.config_kwargs(config_kwargs), backbone_kwargs,
                           seed=args.seed)
    if args.process_index == 0:
        logger.info(history_cut_summary(model.processor, data.splits["train"]))
    return _train(LLMSRecTrainer, model, args, data, output_dir, evaluate_test, model_card_kwargs,
                  resume_from_checkpoint)


__all__ = [
    "CHECKPOINTS_DIR",
    "build_llm_srec",
    "check_catalog",
    "evaluate_model",
    "history_cut_summary",
    "load_data",
    "load_model",
    "pretrain_sasrec",
    "train_llm_srec",
]
