"""`llm-srec pretrain-sasrec`: pre-train the SASRec teacher on prepared data, keep the best validation checkpoint,
and save it with its model card and test metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_srec.cli._arguments import fraction, positive_int
from llm_srec.cli._training import add_training_options, check_output_dir, training_arguments

# Validations (one per epoch) without improvement before the default recipe stops: the official 200 epochs take
# hours on a CPU while the teacher's validation stops improving after a few dozen (BENCHMARKS.md, "SASRec").
EARLY_STOPPING_PATIENCE = 10


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain-sasrec",
        help="Pre-train the SASRec teacher (CF-SRec) on prepared data.",
        description="Pre-train SASRec with BCE and one seeded negative per position (PAPER.md §4; defaults: the "
        "official code's d=64, 2 blocks, 1 head, maxlen 128, Adam lr 1e-3, batch 128, at most 200 epochs). By "
        f"default training stops after {EARLY_STOPPING_PATIENCE} validations (epochs) without a better validation "
        "sampled NDCG@10; --recipe official trains all 200 epochs as the code does. The best checkpoint is saved to "
        "OUTPUT_DIR with a model card and its test metrics under both protocols (metrics.json). Works under "
        "`accelerate launch`.",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder written by `llm-srec prepare-data`")
    parser.add_argument("--output-dir", required=True, type=Path, help="where the trained model is saved")
    model = parser.add_argument_group("model")
    model.add_argument("--hidden-size", type=positive_int, default=64, help="d (default 64)")
    model.add_argument("--num-layers", type=positive_int, default=2, help="self-attention blocks (default 2)")
    model.add_argument("--num-heads", type=positive_int, default=1, help="attention heads (default 1)")
    model.add_argument("--maxlen", type=positive_int, default=128, help="window of most recent items (default 128)")
    model.add_argument("--dropout", type=fraction, default=0.1, help="dropout rate (default 0.1)")
    model.add_argument("--loss-type", choices=("bce", "ce"), default="bce",
                       help="bce: one negative per position (paper); ce: full-catalog softmax")
    add_training_options(parser, "SASRecTrainingArguments")
    parser.add_argument("--recipe", choices=("early-stopping", "official"), default="early-stopping",
                        help=f"early-stopping (default): stop after {EARLY_STOPPING_PATIENCE} epochs without a better "
                        "validation; official: the code's full 200 epochs (--early-stopping-patience overrides both)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from llm_srec.evaluation import format_metrics_table
    from llm_srec.training import SASRecTrainingArguments
    from llm_srec.training.pipeline import load_data, pretrain_sasrec

    check_output_dir(args.output_dir, args.resume, args.overwrite)
    data = load_data(args.data)
    recipe = {"early_stopping_patience": EARLY_STOPPING_PATIENCE} if args.recipe == "early-stopping" else {}
    training_args = training_arguments(args, SASRecTrainingArguments, args.output_dir, recipe)
    config = {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.num_layers,
        "num_attention_heads": args.num_heads,
        "max_position_embeddings": args.maxlen,
        "hidden_dropout_prob": args.dropout,
        "attention_probs_dropout_prob": args.dropout,
        "loss_type": args.loss_type,
    }
    pretrain_sasrec(data, args.output_dir, training_args, config=config, resume_from_checkpoint=args.resume or None)
    if training_args.should_save:
        metrics = json.loads((args.output_dir / "metrics.json").read_text(encoding="utf-8"))
        print(format_metrics_table({"SASRec (test)": metrics}))
        print(f"SASRec teacher saved to {args.output_dir}")
    return 0
