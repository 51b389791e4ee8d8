"""Options shared by `pretrain-sasrec`, `train` and `evaluate`: training/evaluation flags -> training arguments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import check_output_folder, non_negative_int, positive_float, positive_int

# CLI flag dest -> training-argument name (a flag left unset keeps the arguments class's default)
_TRAINING_FLAGS = {
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "learning_rate": "learning_rate",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "seed": "seed",
    "eval_negatives": "num_eval_negatives",
    "eval_seed": "eval_seed",
    "early_stopping_patience": "early_stopping_patience",
    "save_total_limit": "save_total_limit",
    "logging_steps": "logging_steps",
    "dataloader_num_workers": "dataloader_num_workers",
}


def use_cpu_processes_without_accelerator() -> None:
    """Run the processes of a multi-process launch (torchrun, `accelerate launch --multi_gpu`) on CPU with gloo when
    the machine has no accelerator: accelerate only does so when told (``ACCELERATE_USE_CPU``) and would otherwise
    treat every process as a separate single-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch
    from accelerate.utils import is_mlu_available, is_npu_available, is_xpu_available

    if not (torch.cuda.is_available() or is_xpu_available() or is_npu_available() or is_mlu_available()):
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def add_training_options(parser: argparse.ArgumentParser, defaults: str) -> None:
    """Flags common to both trainers; ``defaults`` names the arguments class whose defaults apply."""
    group = parser.add_argument_group(f"training (unset flags keep the {defaults} defaults)")
    group.add_argument("--epochs", type=positive_float, help="number of training epochs")
    group.add_argument("--max-steps", type=positive_int,
                       help="stop after this many optimisation steps (overrides --epochs)")
    group.add_argument("--batch-size", type=positive_int, help="training batch size per process")
    group.add_argument("--gradient-accumulation-steps", type=positive_int, help="micro-batches per optimisation step")
    group.add_argument("--learning-rate", type=positive_float, help="Adam learning rate")
    group.add_argument("--seed", type=non_negative_int,
                       help="seed of the initialisation, data order and training negatives")
    group.add_argument("--early-stopping-patience", type=non_negative_int,
                       help="validations without improvement before stopping (0: never stop early)")
    group.add_argument("--save-total-limit", type=positive_int, help="checkpoints kept (the best is always kept)")
    group.add_argument("--logging-steps", type=positive_float, help="log the losses every this many steps")
    group.add_argument("--dataloader-num-workers", type=non_negative_int, help="data-loading worker processes")
    precision = group.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision")
    precision.add_argument("--fp16", action="store_true", help="float16 mixed precision (GPU)")
    group.add_argument("--resume", action="store_true",
                       help="resume from the last checkpoint in OUTPUT_DIR/checkpoints")
    group.add_argument("--overwrite", action="store_true", help="replace a model already in OUTPUT_DIR")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    evaluation = parser.add_argument_group("validation ranking (model selection)")
    add_protocol_options(evaluation, prefix="eval-")
    evaluation.add_argument("--eval-batch-size", type=positive_int, help="users/items per evaluation batch")
    evaluation.add_argument("--max-eval-users", type=non_negative_int,
                            help="rank at most this many seeded random users (0: all users)")


def add_protocol_options(group: argparse._ArgumentGroup | argparse.ArgumentParser, prefix: str = "") -> None:
    group.add_argument(f"--{prefix}negatives", type=positive_int,
                       help="negatives per user of the sampled protocol (default 99: 1 + 99 candidates)")
    group.add_argument(f"--{prefix}seed", type=non_negative_int, help="seed of the sampled negatives (default 0)")


def training_arguments(
    args: argparse.Namespace, cls: type, output_dir: Path, defaults: dict[str, Any] | None = None, **extra: Any
) -> Any:
    """``cls(output_dir=OUTPUT_DIR/checkpoints, ...)`` from the parsed flags; unset flags keep ``defaults`` (e.g. a
    recipe's), then the class's defaults."""
    use_cpu_processes_without_accelerator()
    options: dict[str, Any] = dict(defaults or {})
    options.update({name: getattr(args, flag) for flag, name in _TRAINING_FLAGS.items()
                    if getattr(args, flag, None) is not None})
    if options.get("early_stopping_patience") == 0:
        options["early_stopping_patience"] = None
    if args.max_eval_users is not None:
        options["max_eval_users"] = args.max_eval_users or None
    options.update({key: value for key, value in extra.items() if value is not None})
    try:
        return cls(
            output_dir=os.fspath(output_dir / "checkpoints"),
            bf16=args.bf16,
            fp16=args.fp16,
            disable_tqdm=args.no_progress,
            **options,
        )
    except ValueError as error:  # TrainingArguments' own checks name the offending option
        raise CLIError(str(error)) from error


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse to train into a folder that already holds a model unless resuming or overwriting."""
    check_output_folder(output_dir)
    if resume:
        checkpoints = output_dir / "checkpoints"
        if not checkpoints.is_dir():
            raise CLIError(f"--resume: {checkpoints} does not exist; nothing to resume")
        from llm_srec.training.checkpointing import survey_checkpoints

        complete, incomplete = survey_checkpoints(checkpoints)
        if not complete:
            skipped = "".join(f"; {Path(path).name} is incomplete ({problem})" for path, problem in incomplete)
            raise CLIError(f"--resume: no complete checkpoint in {checkpoints}; nothing to resume{skipped}")
        return
    if (output_dir / "config.json").exists() and not overwrite:
        raise CLIError(f"{output_dir} already holds a model; pass --overwrite, --resume or another --output-dir")
