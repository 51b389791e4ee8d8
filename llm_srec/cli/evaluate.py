"""`llm-srec evaluate`: rank a split's users with a saved LLM-SRec or SASRec model under the labelled protocols."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import check_output_file, positive_int
from llm_srec.cli._training import add_protocol_options, use_cpu_processes_without_accelerator
from llm_srec.cli.recommend import add_model_loading_options, load_saved_model

PROTOCOL_CHOICES = {"sampled": ("sampled",), "full": ("full",), "both": ("sampled", "full")}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="Rank a split's users with a saved LLM-SRec or SASRec model (NDCG@10/20, HR@10/20).",
        description="Compute NDCG@10/20 and HR@10/20 of a saved model on the validation or test users under "
        "sampled(1+N, seed=S) (the target against N seeded negatives the user never interacted with) and/or "
        "full-catalog (every item, the history excluded). Results are keyed by protocol label, as in "
        "metrics.json. Under `accelerate launch` the users and the item index are split across processes; the "
        "metrics equal a single-process run.",
    )
    parser.add_argument("--model", required=True, type=Path, help="saved LLM-SRec or SASRec model folder")
    parser.add_argument("--data", required=True, type=Path, help="folder written by `llm-srec prepare-data`")
    parser.add_argument("--protocol", choices=tuple(PROTOCOL_CHOICES), default="both", help="default: both")
    parser.add_argument("--split", choices=("validation", "test"), default="test", help="default: test")
    parser.add_argument("--output", type=Path, help="write the metrics JSON here")
    add_protocol_options(parser)
    parser.add_argument("--max-users", type=positive_int, help="rank a seeded random subset of at most this many users")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="users/items per forward pass (default 64)")
    add_model_loading_options(parser)
    parser.add_argument("--update-card", action="store_true",
                        help="store the test metrics in the model folder (metrics.json) and re-render its card")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from llm_srec.evaluation import format_metrics_table
    from llm_srec.hub import write_model_card
    from llm_srec.modeling import LLMSRecForRecommendation
    from llm_srec.training.pipeline import check_catalog, evaluate_model, load_data

    if args.update_card and args.split != "test":
        raise CLIError("--update-card stores test metrics (metrics.json is the test split); use --split test")
    check_output_file(args.output, "--output")
    if args.update_card:
        check_output_file(args.model / "metrics.json", "--update-card")
    use_cpu_processes_without_accelerator()
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    data = load_data(args.data)
    model = load_saved_model(args.model, args.backbone, args.dtype)
    if isinstance(model, LLMSRecForRecommendation) and model.processor is None:
        raise CLIError(f"{args.model} holds no processor (item catalog): it cannot rank {args.data}")
    try:
        check_catalog(model, data, str(args.model))
    except ValueError as error:
        raise CLIError(f"{error} ({args.data})") from error
    model.to(state.device)
    metrics = evaluate_model(
        model,
        data,
        args.split,
        PROTOCOL_CHOICES[args.protocol],
        num_negatives=99 if args.negatives is None else args.negatives,
        seed=0 if args.seed is None else args.seed,
        max_users=args.max_users,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
    )
    if state.is_main_process:
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if args.update_card:
            write_model_card(args.model, metrics=metrics)
        print(format_metrics_table({f"{args.model.name} ({args.split})": metrics}))
    return 0
