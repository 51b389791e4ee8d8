"""`llm-srec recommend`: top-k next items for a history of external item ids, with a saved LLM-SRec model."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_srec.cli import CLIError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recommend",
        help="Recommend the next items for a history of item ids with a saved LLM-SRec model.",
        description="Score the whole catalog for one user history (external item ids, oldest first) and print the "
        "top-k items with their titles and scores. The item index is computed once per call (the model caches it; "
        "`model.refresh_item_index()` rebuilds it in Python).",
    )
    parser.add_argument("--model", required=True, type=Path, help="saved LLM-SRec model folder")
    parser.add_argument("--history", required=True, nargs="+", metavar="ID",
                        help="external item ids of the user's history, oldest first")
    parser.add_argument("--timestamps", nargs="+", type=int, metavar="UNIX_SECONDS",
                        help="one unix timestamp per history item (shown as dates in the prompt)")
    parser.add_argument("-k", type=int, default=10, help="number of recommendations (default 10)")
    parser.add_argument("--include-history", action="store_true", help="allow items already in the history")
    parser.add_argument("--batch-size", type=int, default=64, help="items per forward pass for the item index")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="backbone dtype")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from llm_srec.modeling import LLMSRecForRecommendation
    from llm_srec.training.pipeline import load_model

    if args.timestamps is not None and len(args.timestamps) != len(args.history):
        raise CLIError(f"--timestamps has {len(args.timestamps)} values for {len(args.history)} history items")
    if args.k < 1:
        raise CLIError(f"-k must be a positive integer, got {args.k}")
    model = load_model(args.model, **({"dtype": getattr(torch, args.dtype)} if args.dtype else {}))
    if not isinstance(model, LLMSRecForRecommendation):
        raise CLIError(f"{args.model} is a SASRec model; recommend needs an LLM-SRec model (it holds the catalog)")
    if torch.cuda.is_available():
        model.to("cuda")
    model.refresh_item_index(args.batch_size)
    [recommendation] = model.recommend(
        [args.history],
        k=args.k,
        timestamps=None if args.timestamps is None else [args.timestamps],
        exclude_history=not args.include_history,
        batch_size=args.batch_size,
    )
    rows = list(zip(recommendation.item_ids, recommendation.titles, recommendation.scores))
    id_width = max([len("item id"), *(len(item) for item, _, _ in rows)])
    title_width = max([len("title"), *(len(title) for _, title, _ in rows)])
    print(f"{'rank':>4}  {'item id':<{id_width}}  {'title':<{title_width}}  {'score':>9}")
    for rank, (item, title, score) in enumerate(rows, start=1):
        print(f"{rank:>4}  {item:<{id_width}}  {title:<{title_width}}  {score:>9.4f}")
    return 0
