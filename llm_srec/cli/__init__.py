"""The `llm-srec` command line: one module per subcommand, each exposing `add_parser(subparsers)`.

`COMMANDS` is the one table of subcommands; a new command is a module plus a row there. Building the parser imports
no torch or transformers (the commands import them when they run), so `--help` and argument errors are instant.

`main` is the one error boundary: an error caused by the input or the environment (a `CLIError`, a `ValueError`
such as a JSON or Arrow decoding error, an `OSError` such as a missing, unreadable or unwritable file) is printed
as one line naming the file, flag or value, with exit status 2; `--debug` or ``LLM_SREC_DEBUG=1`` shows the full
traceback instead. Argument errors are one line with exit status 2 too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn, Sequence

from llm_srec.cli._errors import CLIError

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
    "convert-gguf": "convert_gguf",
}
DEBUG_ENVIRONMENT_VARIABLE = "LLM_SREC_DEBUG"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage of `train` alone is a dozen lines): the flag, the problem and where
    to read more; exit status 2 as argparse's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from llm_srec.cli._arguments import log_level

    parser = ArgumentParser(
        prog="llm-srec",
        description="LLM-SRec: sequential recommendation with a frozen LLM distilled from SASRec.",
    )
    parser.add_argument("--log-level", default="INFO", type=log_level,
                        help="Python logging level: DEBUG, INFO (default), WARNING, ERROR or CRITICAL.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line "
                        f"(also {DEBUG_ENVIRONMENT_VARIABLE}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module_name}").add_parser(subparsers)
    for subparser in subparsers.choices.values():  # also after the command; SUPPRESS keeps the top-level value
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the full traceback of an error instead of one line")
    return parser


def describe_user_error(error: BaseException) -> str | None:
    """The one line shown for an error in the user's input or environment; None for anything else (a bug, whose
    traceback is wanted)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        # "[Errno 13] Permission denied: 'x'" -> "x: permission denied"
        where = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else f"{error.filename}"
        message = f"{where}: {error.strerror[0].lower()}{error.strerror[1:]}"
    elif isinstance(error, (CLIError, ValueError, OSError)):  # ValueError covers JSON, Unicode and Arrow decoding
        message = str(error) or type(error).__name__
    elif type(error).__module__.split(".")[0] == "pyarrow":  # pyarrow.lib.ArrowException and kin
        message = f"{type(error).__name__}: {error}"
    else:
        return None
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0")
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
    except Exception as error:
        message = None if debug else describe_user_error(error)
        if message is None:
            raise
        print(f"llm-srec {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
