"""`llm-srec prepare-data`: read a dataset from any supported source, preprocess it, save it as Arrow + JSON, and
print its statistics and the drop report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import check_output_folder, fraction, non_negative_int, positive_int

SOURCES = ("amazon2023", "recbole", "movielens", "sasrec", "tabular", "synthetic")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare-data",
        help="Read, filter and split a dataset into Arrow splits + item catalog.",
        description="Read a dataset, apply deduplication/filters, split leave-last-out, and save it.",
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--path", help="input file or folder (amazon2023: a local folder instead of the Hub)")
    parser.add_argument("--output-dir", required=True, help="where to save the prepared dataset")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")

    processing = parser.add_argument_group("processing (defaults differ for amazon2023: the paper's preprocessing)")
    processing.add_argument("--dedup", choices=("none", "exact", "first", "last"),
                            help="repeated (user, item) policy (default: exact; amazon2023: none)")
    processing.add_argument("--filter", dest="filter_mode", choices=("none", "kcore", "paper"),
                            help="kcore = iterated k-core, paper = official single pass "
                                 "(default: none; amazon2023: paper)")
    processing.add_argument("--min-user-interactions", type=non_negative_int, default=5)
    processing.add_argument("--min-item-interactions", type=non_negative_int, default=5)
    processing.add_argument("--sample-rate", type=fraction,
                            help="fraction of users kept before filtering (default 1; amazon2023: the paper's rate)")
    processing.add_argument("--seed", type=non_negative_int, default=0, help="user sampling / synthetic data seed")
    processing.add_argument("--item-order", choices=("appearance", "sorted"), default="appearance",
                            help="how internal ids 1..N are assigned")
    processing.add_argument("--missing-title", type=missing_title,
                            help='placeholder title, may contain {item_id} (default "No Title")')

    reading = parser.add_argument_group("reading")
    reading.add_argument("--on-bad-rows", choices=("error", "skip"), default="error",
                         help="malformed rows: stop with file/line/column, or drop and count them")
    reading.add_argument("--encoding", help="text encoding (default utf-8; MovieLens latin-1)")
    reading.add_argument("--encoding-errors", choices=("strict", "replace"), default="strict")
    reading.add_argument("--unknown-items", choices=("keep", "drop", "error"), default="keep",
                         help="interactions whose item has no metadata: placeholder title, drop, or stop")
    reading.add_argument("--titles-path", help="separate title file (movielens, sasrec, tabular; recbole: the "
                                               ".item/.text file when its name is not the dataset's)")

    amazon = parser.add_argument_group("amazon2023")
    amazon.add_argument("--category", help="e.g. Industrial_and_Scientific, Movies_and_TV, Electronics, CDs_and_Vinyl")
    amazon.add_argument("--revision", help="Hub revision of McAuley-Lab/Amazon-Reviews-2023")
    amazon.add_argument("--cache-dir", help="huggingface_hub cache folder")
    amazon.add_argument("--no-metadata", action="store_true", help="skip the (large) metadata file: no titles")

    recbole = parser.add_argument_group("recbole")
    recbole.add_argument("--dataset", help="dataset name (file prefix) when the folder holds several")
    recbole.add_argument("--title-field", help="title column of the .item/.text file")
    recbole.add_argument("--title-end-marker", action="append", default=[],
                         help='cut titles before this text (repeatable), e.g. ". Industrial & Scientific"')

    tabular = parser.add_argument_group("tabular")
    tabular.add_argument("--user-column")
    tabular.add_argument("--item-column")
    tabular.add_argument("--time-column")
    tabular.add_argument("--title-column")
    tabular.add_argument("--titles-item-column", help="item column of --titles-path (default: --item-column)")
    tabular.add_argument("--format", dest="file_format", choices=("csv", "tsv", "jsonl", "parquet"))
    tabular.add_argument("--sep", help="CSV separator (default , for csv, tab for tsv)")
    tabular.add_argument("--time-unit", choices=("s", "ms", "us", "ns", "iso"), default="s")

    synthetic = parser.add_argument_group("synthetic")
    synthetic.add_argument("--num-users", type=positive_int, default=500)
    synthetic.add_argument("--num-items", type=positive_int, default=200)
    synthetic.add_argument("--min-length", type=positive_int, default=6)
    synthetic.add_argument("--max-length", type=positive_int, default=20)
    synthetic.add_argument("--noise", type=fraction, default=0.2)
    synthetic.add_argument("--cycle-length", type=positive_int, default=24)

    parser.set_defaults(func=run)
    return parser


def missing_title(text: str) -> str:
    """`--missing-title` checked while parsing (a placeholder other than {item_id} fails after the whole read)."""
    from llm_srec.data.placeholders import check_missing_title

    try:
        return check_missing_title(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is None]
    if missing:
        raise CLIError(f"--source {args.source} needs {' and '.join(missing)}")


def load_raw(args: argparse.Namespace) -> Any:
    """The source's `RawInteractions` for the parsed arguments."""
    from llm_srec import data as readers

    reading: dict[str, Any] = {"encoding_errors": args.encoding_errors, "on_bad_rows": args.on_bad_rows}
    if args.encoding:
        reading["encoding"] = args.encoding
    if args.source == "synthetic":
        config = readers.SyntheticConfig(
            num_users=args.num_users, num_items=args.num_items, min_length=args.min_length,
            max_length=args.max_length, noise=args.noise, cycle_length=args.cycle_length, seed=args.seed,
        )
        return readers.generate_synthetic(config)
    if args.source == "amazon2023":
        _need(args, "category")
        reading.pop("encoding", None)
        return readers.load_amazon2023(
            args.category, path=args.path, revision=args.revision, cache_dir=args.cache_dir,
            metadata=not args.no_metadata, unknown_items=args.unknown_items, **reading,
        )
    _need(args, "path")
    if args.source == "recbole":
        return readers.load_recbole(args.path, dataset=args.dataset, title_field=args.title_field,
                                    title_end_markers=args.title_end_marker, titles_path=args.titles_path,
                                    unknown_items=args.unknown_items, **reading)
    if args.source == "movielens":
        return readers.load_movielens(args.path, titles_path=args.titles_path, unknown_items=args.unknown_items,
                                      **reading)
    if args.source == "sasrec":
        return readers.load_sasrec_text(args.path, titles_path=args.titles_path, unknown_items=args.unknown_items,
                                        **reading)
    _need(args, "user_column", "item_column")
    return readers.load_tabular(
        args.path, user_column=args.user_column, item_column=args.item_column, time_column=args.time_column,
        title_column=args.title_column, titles_path=args.titles_path, titles_item_column=args.titles_item_column,
        file_format=args.file_format, sep=args.sep, time_unit=args.time_unit, unknown_items=args.unknown_items,
        **reading,
    )


def processing_options(args: argparse.Namespace) -> dict[str, Any]:
    """`build_recommendation_data` keyword arguments: the source's defaults, overridden by explicit flags."""
    from llm_srec.data import PAPER_SAMPLING_RATES

    options: dict[str, Any] = {"dedup": "exact", "filter_mode": "none", "sample_rate": 1.0}
    if args.source == "amazon2023":
        options = {"dedup": "none", "filter_mode": "paper",
                   "sample_rate": PAPER_SAMPLING_RATES.get(args.category, 1.0)}
    for name in ("dedup", "filter_mode", "sample_rate", "missing_title"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options.update(min_user_interactions=args.min_user_interactions,
                   min_item_interactions=args.min_item_interactions, seed=args.seed, item_order=args.item_order)
    return options


def format_statistics(statistics: dict[str, Any]) -> str:
    s = statistics
    return "\n".join([
        f"dataset {s['dataset']}:",
        f"  users              {s['num_users']:,}",
        f"  items              {s['num_items']:,}",
        f"  interactions       {s['num_interactions']:,}",
        f"  avg. seq. length   {s['avg_sequence_length']:.2f} (min {s['min_sequence_length']}, "
        f"median {s['median_sequence_length']:g}, max {s['max_sequence_length']})",
        f"  timestamps         {'yes' if s['has_timestamps'] else 'no'}",
        f"  rows               train {s['num_train_rows']:,} / validation {s['num_validation_rows']:,} / "
        f"test {s['num_test_rows']:,}",
    ])


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from llm_srec.data import build_recommendation_data

    output = Path(args.output_dir)
    check_output_folder(output)
    if output.exists() and any(output.iterdir()) and not args.overwrite:
        raise CLIError(f"{output} is not empty; pass --overwrite or choose another --output-dir")
    # no bar when stderr is not a terminal, so a script's stderr holds just the one-line error
    with tqdm(total=3, desc="prepare-data", unit="step", disable=None) as progress:
        progress.set_postfix_str(f"reading {args.source}")
        raw = load_raw(args)
        progress.update()
        progress.set_postfix_str("processing")
        data = build_recommendation_data(raw, **processing_options(args))
        progress.update()
        progress.set_postfix_str("saving")
        data.save_to_disk(output)
        progress.update()
    print(format_statistics(data.statistics()))
    print(data.drop_report.format())
    print(f"saved to {output}")
    return 0
