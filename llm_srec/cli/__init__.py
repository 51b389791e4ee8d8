"""The `llm-srec` command line: one module per subcommand, each exposing `add_parser(subparsers)`.

`COMMANDS` is the one table of subcommands; a new command is a module plus a row there.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# subcommand name -> module under llm_srec.cli
COMMANDS: dict[str, str] = {
    "prepare-data": "prepare_data",
    "pretrain-sasrec": "pretrain_sasrec",
    "train": "train",
    "evaluate": "evaluate",
    "recommend": "recommend",
    "demo": "demo",
    "probe": "probe",
    "card": "card",
    "push": "push",
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


# Library errors that name a problem with the user's input: shown as one line, like CLIError.
USER_ERRORS = (CLIError, ValueError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-srec",
        description="LLM-SRec: sequential recommendation with a frozen LLM distilled from SASRec.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default: INFO).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
    except USER_ERRORS as error:
        print(f"llm-srec {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
