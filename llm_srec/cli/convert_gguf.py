"""`llm-srec convert-gguf`: de-quantise a GGUF checkpoint once into a plain transformers folder for `--backbone`.

Why: a GGUF-loaded model cannot be saved and de-quantising on every load costs time; the converted folder loads like
any Hub checkpoint, and its ``gguf_source.json`` lets model cards name the exact GGUF file the weights came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_srec.cli._arguments import check_gguf_file, check_output_folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-gguf",
        help="De-quantise a GGUF checkpoint into a plain transformers folder usable as --backbone.",
        description="Load GGUF_FILE from SOURCE (a Hub id or a local folder) with transformers' GGUF reader, "
        "de-quantised to float32, and save model and tokenizer as a plain folder. `train --gguf-file` does the "
        "same on the fly into a cache folder. Needs the gguf package (pip install gguf).",
    )
    parser.add_argument("source", help="Hub id or local folder holding the GGUF file.")
    parser.add_argument("--gguf-file", required=True, help="The GGUF file's name inside SOURCE.")
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder to write.")
    parser.add_argument("--revision", default=None, help="Hub revision of SOURCE.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm_srec.backbones import convert_gguf_backbone
    from llm_srec.cli._errors import CLIError

    check_output_folder(args.output_dir)
    if (args.output_dir / "config.json").exists():
        raise CLIError(f"--output-dir {args.output_dir} already holds a model (config.json); choose a new folder")
    check_gguf_file(args.source, args.gguf_file, args.source)
    try:
        convert_gguf_backbone(args.source, args.gguf_file, args.output_dir,
                              **({"revision": args.revision} if args.revision else {}))
    except ImportError as error:
        raise CLIError(str(error)) from error
    print(args.output_dir)
    return 0
