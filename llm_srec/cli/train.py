"""`llm-srec train`: train LLM-SRec on a frozen backbone and a pre-trained SASRec teacher, keep the best validation
checkpoint, and save it (heads + teacher + processor, never the backbone) with its model card and test metrics."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import (
    check_backbone_argument,
    check_gguf_file,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from llm_srec.cli._training import add_training_options, check_output_dir, training_arguments

logger = logging.getLogger(__name__)
TINY_BACKBONE = "tiny"  # --backbone tiny: the demo's random-initialised backbone


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="Train LLM-SRec on a frozen backbone LLM distilled from a SASRec teacher.",
        description="Train the LLM-SRec heads and output vectors (backbone and teacher frozen) with a named recipe "
        "(--recipe) on the paper's schedule: Adam lr 1e-4, batch 20, at most 10 epochs, validation every 10% of an "
        "epoch on sampled HR@10, early stopping (patience 10). The best checkpoint is saved to OUTPUT_DIR with a model card and its test "
        "metrics under both protocols. Works under `accelerate launch` (see examples/accelerate/).",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder written by `llm-srec prepare-data`")
    parser.add_argument("--sasrec", required=True, type=Path, help="SASRec folder written by `llm-srec pretrain-sasrec`")
    parser.add_argument("--backbone", required=True,
                        help="Hub id or local folder of the LLM (e.g. meta-llama/Llama-3.2-3B-Instruct), or 'tiny': "
                        "the demo's random-initialised 64-wide Llama, built in OUTPUT_DIR/backbone and labelled as "
                        "never pre-trained on the card (quick experiments only)")
    parser.add_argument("--output-dir", required=True, type=Path, help="where the trained model is saved")
    model = parser.add_argument_group("model (defaults: the paper's)")
    model.add_argument("--history-length", type=positive_int, help="history items shown in the user prompt (10)")
    model.add_argument("--embedding-size", type=positive_int, help="d', the shared recommendation space (128)")
    model.add_argument("--head-hidden-size", type=positive_int, help="hidden width of f_user / f_item (2048)")
    model.add_argument("--cf-hidden-size", type=positive_int, help="hidden width of f_CF-user (128)")
    model.add_argument("--distillation-loss", choices=("mse", "contrastive"), help="distillation variant (mse)")
    model.add_argument("--max-prompt-length", type=positive_int,
                       help="token budget of a prompt (default 1024, or the backbone's max_position_embeddings when "
                       "smaller)")
    backbone = parser.add_argument_group("backbone loading")
    backbone.add_argument("--gguf-file", default=None,
                          help="a GGUF file inside --backbone (Hub id or folder): de-quantised once into a cache "
                          "folder ($HF_HOME/llm_srec/gguf) that serves as the backbone; the model card names the file "
                          "(needs `pip install gguf`; `llm-srec convert-gguf` writes such a folder where you choose)")
    backbone.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"),
                          help="dtype of the backbone weights (default: the checkpoint's)")
    bits = backbone.add_mutually_exclusive_group()
    bits.add_argument("--load-in-8bit", action="store_true", help="8-bit backbone via bitsandbytes (GPU)")
    bits.add_argument("--load-in-4bit", action="store_true", help="4-bit NF4 backbone via bitsandbytes (GPU)")
    backbone.add_argument("--gradient-checkpointing", action="store_true",
                          help="recompute the backbone's activations in the backward pass (less memory)")
    add_training_options(parser, "LLMSRecTrainingArguments")
    from llm_srec.training.recipes import DEFAULT_RECIPE, RECIPES

    recipe = parser.add_argument_group("LLM-SRec recipe")
    recipe.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                        help=f"named loss/training recipe (default {DEFAULT_RECIPE}); "
                        + "; ".join(f"{name}: {item.summary}" for name, item in sorted(RECIPES.items())))
    recipe.add_argument("--train-mode", choices=("last", "all"),
                        help="last: one example per user (paper); all: every position (App. E.3)")
    recipe.add_argument("--num-train-negatives", type=non_negative_int, help="negatives per training example (3)")
    recipe.add_argument("--eval-fraction", type=fraction,
                        help="validate every this fraction of an epoch (0.1); 0 validates once per epoch")
    recipe.add_argument("--lr-decay", type=positive_float,
                        help="multiply the lr by this after every validation (the official code: 0.95)")
    recipe.add_argument("--group-by-length", action="store_true",
                        help="batch training users of similar prompt length (less padding; other batches than the "
                        "default random order, so other results)")
    parser.set_defaults(func=run)
    return parser


def backbone_prompt_budget(backbone: str) -> dict[str, int]:
    """``{"max_prompt_length": limit}`` when the backbone's max_position_embeddings is below the config's default
    budget (a 512-position encoder would otherwise be refused), else nothing."""
    import inspect

    from transformers import AutoConfig

    from llm_srec.modeling import LLMSRecConfig

    default = inspect.signature(LLMSRecConfig.__init__).parameters["max_prompt_length"].default
    limit = getattr(AutoConfig.from_pretrained(backbone).get_text_config(), "max_position_embeddings", None)
    if isinstance(limit, int) and limit < default:
        logger.info("--max-prompt-length %d: the backbone %s has %d positions", limit, backbone, limit)
        return {"max_prompt_length": limit}
    return {}


def gguf_backbone(source: str, gguf_file: str) -> Path:
    """The converted folder of ``--gguf-file`` in ``--backbone`` (converted on first use)."""
    from llm_srec.backbones import gguf_backbone_folder

    check_gguf_file(source, gguf_file, f"--backbone {source}")
    try:
        return gguf_backbone_folder(source, gguf_file)
    except ImportError as error:  # the gguf package is missing: the message names it
        raise CLIError(str(error)) from error


def backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    """`AutoModel.from_pretrained` options for the backbone from the flags."""
    options: dict[str, Any] = {}
    if args.dtype and args.dtype != "auto":
        import torch

        options["dtype"] = getattr(torch, args.dtype)
    if args.load_in_8bit or args.load_in_4bit:
        import torch
        from transformers import BitsAndBytesConfig

        if not torch.cuda.is_available():
            raise CLIError("--load-in-8bit/--load-in-4bit need a CUDA GPU (bitsandbytes)")
        options["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True) if args.load_in_8bit
            else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        )
    return options


def run(args: argparse.Namespace) -> int:
    from llm_srec.evaluation import format_metrics_table
    from llm_srec.modeling.modeling_llm_srec import PromptBudgetError
    from llm_srec.training import LLMSRecTrainingArguments
    from llm_srec.training.pipeline import load_data, train_llm_srec
    from llm_srec.training.recipes import get_recipe

    check_output_dir(args.output_dir, args.resume, args.overwrite)
    random_backbone = args.backbone == TINY_BACKBONE
    if not random_backbone:
        check_backbone_argument(args.backbone)
    data = load_data(args.data)
    recipe = get_recipe(args.recipe)
    extra: dict[str, Any] = {
        "train_mode": args.train_mode,
        "num_train_negatives": args.num_train_negatives,
        "lr_decay_per_evaluation": args.lr_decay,
        "activation_checkpointing": args.gradient_checkpointing or None,
        "train_sampling_strategy": "group_by_length" if args.group_by_length else None,
    }
    if args.eval_fraction == 0:
        extra.update(eval_every_epoch_fraction=None, eval_strategy="epoch", save_strategy="epoch")
    elif args.eval_fraction is not None:
        extra["eval_every_epoch_fraction"] = args.eval_fraction
    training_args = training_arguments(args, LLMSRecTrainingArguments, args.output_dir, dict(recipe.training), **extra)
    config_kwargs = {
        name: getattr(args, name)
        for name in ("history_length", "embedding_size", "head_hidden_size", "cf_hidden_size", "distillation_loss",
                     "max_prompt_length")
        if getattr(args, name) is not None
    }
    backbone = args.backbone
    if random_backbone:
        from llm_srec.cli.demo import build_random_backbone

        backbone = build_random_backbone(data.catalog.titles, args.output_dir / "backbone", training_args.seed)
    elif args.gguf_file:
        backbone = str(gguf_backbone(args.backbone, args.gguf_file))
    if args.max_prompt_length is None:
        config_kwargs.update(backbone_prompt_budget(backbone))
    try:
        train_llm_srec(
            data, args.sasrec, backbone, args.output_dir, training_args, config_kwargs=config_kwargs,
            backbone_kwargs=backbone_options(args), resume_from_checkpoint=args.resume or None, recipe=recipe,
            model_card_kwargs={"backbone_random_init": True} if random_backbone else None,
        )
    except PromptBudgetError as error:  # the library's message names the config, not the flag
        raise CLIError(f"--max-prompt-length {error.max_prompt_length} exceeds the backbone's max_position_embeddings "
                       f"({error.limit}); pass --max-prompt-length {error.limit} or less") from None
    if training_args.should_save:
        metrics = json.loads((args.output_dir / "metrics.json").read_text(encoding="utf-8"))
        print(format_metrics_table({"LLM-SRec (test)": metrics}))
        print(f"LLM-SRec model saved to {args.output_dir}")
    return 0
