"""`llm-srec card`: (re)render a saved model folder's model card from the files the folder holds."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from llm_srec.cli._arguments import check_output_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "card",
        help="(Re)render the model card (README.md) of a saved model folder.",
        description="Render the model card of a saved LLM-SRec or SASRec folder from its config.json and its "
        "metrics.json, probe.json, data_statistics.json, training_args.json and card.json when present. "
        "Re-rendering replaces the card; it never appends.",
    )
    parser.add_argument("--model", required=True, type=Path, help="Saved model folder.")
    parser.add_argument("--output", type=Path, default=None,
                        help="Where to write the card (default: MODEL/README.md).")
    parser.add_argument("--repo-id", default=None,
                        help="Hub repo id shown in the usage snippet; recorded in MODEL/card.json when the card is "
                        "written into MODEL.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm_srec.hub import README_FILE, CardContext, render_model_card, write_model_card

    output = args.output or args.model / README_FILE
    check_output_file(output, "--output" if args.output else "--model")
    if output.resolve() == (args.model / README_FILE).resolve():
        write_model_card(args.model, repo_id=args.repo_id)
    else:
        context = CardContext.from_folder(args.model)
        if args.repo_id is not None:
            context = dataclasses.replace(context, repo_id=args.repo_id)
        render_model_card(context).save(output)
    print(output)
    return 0
