"""Argument types and path checks shared by the subcommands.

Why: a value that makes no sense (a batch of 0 users, a negative epoch count, a log level logging does not know) is
refused while parsing, naming the flag, before any model is loaded; an output that cannot be written is refused
before minutes of work, not after them. Nothing here imports torch or transformers, so `--help` and argument errors
stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable

from llm_srec.cli._errors import CLIError

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def _number(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], int | float]:
    """An argparse `type` that parses ``kind`` and refuses values failing ``test`` as "not ``what``"."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value in (float("inf"), float("-inf")) or not test(value):  # NaN/inf fail too
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda value: value > 0, "a positive integer")
non_negative_int = _number(int, lambda value: value >= 0, "a non-negative integer")
positive_float = _number(float, lambda value: value > 0, "a positive number")
non_negative_float = _number(float, lambda value: value >= 0, "a non-negative number")


def fraction(text: str) -> float:
    """A float in [0, 1] (a rate or a sampling fraction)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1")
    return value


def log_level(text: str) -> str:
    """A logging level name, upper-cased: refused here rather than as a ValueError from `logging.basicConfig`."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level; choose one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def check_output_file(path: Path | None, flag: str) -> None:
    """Refuse an output file that is a folder or whose folder cannot be written, before the work that fills it."""
    if path is None:
        return
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a folder; name a file")
    _check_writable(path.parent, flag, path)


def check_output_folder(path: Path, flag: str = "--output-dir") -> None:
    """Refuse an output folder that is a file or that cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"{flag} {path} is a file, not a folder")
    _check_writable(path, flag, path)


def _check_writable(folder: Path, flag: str, named: Path) -> None:
    """The nearest existing folder at or above ``folder`` must be a writable folder (so ``named`` can be created)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"{flag} {named}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {named}: {existing} is not writable (permission denied)")


def check_gguf_file(source: str, gguf_file: str, where: str) -> None:
    """Refuse a ``--gguf-file`` that a local ``source`` folder does not hold (``where`` names that folder in the
    message), before the GGUF reader fails on it; a Hub id is left to the download."""
    if Path(source).is_dir() and not (Path(source) / gguf_file).is_file():
        raise CLIError(f"--gguf-file {gguf_file}: no such file in {where}")


def check_backbone_argument(backbone: str, flag: str = "--backbone") -> None:
    """Refuse a saved LLM-SRec or SASRec folder passed as the backbone: it would fail deep in loading with a message
    about prompt lengths or sentencepiece."""
    config = Path(backbone) / "config.json"
    if not config.is_file():
        return
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, OSError, AttributeError):
        return  # loading the backbone names the broken file
    if model_type in ("sasrec", "llm_srec"):
        kind = "a SASRec teacher" if model_type == "sasrec" else "an LLM-SRec model"
        raise CLIError(f"{flag} {backbone} is {kind} folder, not a language model; pass a Hub id or a folder of "
                       "the backbone LLM")

