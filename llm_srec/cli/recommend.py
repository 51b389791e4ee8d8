"""`llm-srec recommend`: top-k next items for a history of external item ids, with a saved LLM-SRec model.

Also the loading that `evaluate` shares: `--backbone`/`--dtype` and the checks that refuse a broken model folder
before its backbone is loaded (minutes for a real LLM).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import check_backbone_argument, positive_int


def add_model_loading_options(parser: argparse.ArgumentParser) -> None:
    """`--backbone` and `--dtype` of the commands that load a saved model."""
    parser.add_argument("--backbone", help="Hub id or folder of the backbone LLM, replacing the one recorded in the "
                        "model's config.json (e.g. after moving the model or the backbone)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="backbone dtype (LLM-SRec)")


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
    parser.add_argument("--timestamps", nargs="+", metavar="UNIX_SECONDS",
                        help="one unix timestamp per history item (shown as dates in the prompt)")
    parser.add_argument("-k", type=positive_int, default=10, help="number of recommendations (default 10)")
    parser.add_argument("--include-history", action="store_true", help="allow items already in the history")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="items per forward pass for the item index")
    add_model_loading_options(parser)
    parser.set_defaults(func=run)
    return parser


def parse_timestamps(values: list[str] | None, history: list[str]) -> list[int] | None:
    """The `--timestamps` as unix seconds, one per history item; anything else is an error naming the value (the
    processor would silently show a negative time as no time)."""
    from llm_srec.modeling.processing_llm_srec import MAX_UNIX_SECONDS

    if values is None:
        return None
    if len(values) != len(history):
        raise CLIError(f"--timestamps has {len(values)} values for {len(history)} history items")
    seconds = []
    for value in values:
        try:
            number = int(value)
        except ValueError:
            raise CLIError(f"--timestamps: {value!r} is not an integer number of unix seconds") from None
        if number < 0:
            raise CLIError(f"--timestamps: {value} is negative; pass unix seconds (0 = 1970-01-01)")
        if number > MAX_UNIX_SECONDS:
            raise CLIError(f"--timestamps: {value} is after the year 5000: not unix seconds (milliseconds?)")
        seconds.append(number)
    return seconds


def check_finite_weights(model_dir: Path) -> None:
    """Refuse a checkpoint holding NaN/inf (e.g. from a diverged run), which would rank with `nan` scores."""
    import torch
    from safetensors import SafetensorError, safe_open
    from transformers.utils import SAFE_WEIGHTS_NAME

    weights = model_dir / SAFE_WEIGHTS_NAME
    if not weights.is_file():
        return  # loading reports the missing file
    try:
        with safe_open(str(weights), framework="pt") as handle:
            broken = [name for name in handle.keys()
                      if (tensor := handle.get_tensor(name)).is_floating_point() and not torch.isfinite(tensor).all()]
    except SafetensorError as error:
        raise CLIError(f"{weights} is not a readable safetensors file ({error})") from None
    if broken:
        raise CLIError(f"{weights} holds NaN/inf values in {len(broken)} tensor(s): {', '.join(broken[:5])}"
                       f"{' ...' if len(broken) > 5 else ''}; the checkpoint is broken (a diverged training run?)")


def load_saved_model(model_dir: Path, backbone: str | None, dtype: str | None) -> Any:
    """`load_model` with `--backbone` (replaces the config's llm_name_or_path) and `--dtype`; a recorded backbone
    folder that no longer exists and broken weights are refused before the backbone is loaded."""
    import torch

    from llm_srec.modeling import LLMSRecConfig
    from llm_srec.modeling.saving_llm_srec import read_json
    from llm_srec.modeling.modeling_llm_srec import missing_backbone_folder
    from llm_srec.training.pipeline import load_model

    options: dict[str, Any] = {"dtype": getattr(torch, dtype)} if dtype else {}
    config_file = model_dir / "config.json"
    if config_file.is_file() and read_json(config_file).get("model_type") == LLMSRecConfig.model_type:
        config = LLMSRecConfig.from_pretrained(model_dir)
        if backbone is not None:
            if missing_backbone_folder(backbone):
                raise CLIError(f"--backbone {backbone}: no such folder")
            check_backbone_argument(backbone)
            config.llm_name_or_path = backbone
        elif missing_backbone_folder(config.llm_name_or_path):
            raise CLIError(f"the backbone folder {config.llm_name_or_path} recorded in {config_file} does not exist "
                           "(moved?); pass --backbone with its new folder or its Hub id")
        options["config"] = config
    elif backbone is not None and config_file.is_file():
        raise CLIError(f"--backbone applies to LLM-SRec models; {model_dir} is not one")
    check_finite_weights(model_dir)
    try:
        return load_model(model_dir, **options)
    except OSError as error:  # transformers' message for an unreachable Hub id does not name the id
        if "config" not in options:
            raise
        source = "--backbone" if backbone is not None else f"recorded in {config_file}"
        raise CLIError(f"loading {model_dir} with the backbone {options['config'].llm_name_or_path} ({source}) "
                       f"failed: {error}") from error


def run(args: argparse.Namespace) -> int:
    import torch

    from llm_srec.modeling import ItemCatalog, LLMSRecForRecommendation
    from llm_srec.modeling.catalog_llm_srec import ITEM_CATALOG_NAME

    timestamps = parse_timestamps(args.timestamps, args.history)
    catalog_file = args.model / ITEM_CATALOG_NAME
    if catalog_file.is_file():  # unknown ids fail in a second, not after loading the backbone
        catalog = ItemCatalog.load(catalog_file)
        try:
            catalog.to_internal(args.history)
        except ValueError as error:
            raise CLIError(f"--history: {error} (the catalog is {catalog_file})") from None
    model = load_saved_model(args.model, args.backbone, args.dtype)
    if not isinstance(model, LLMSRecForRecommendation):
        raise CLIError(f"{args.model} is a SASRec model; recommend needs an LLM-SRec model (it holds the catalog)")
    if torch.cuda.is_available():
        model.to("cuda")
    [recommendation] = model.recommend(
        [args.history],
        k=args.k,
        timestamps=None if timestamps is None else [timestamps],
        exclude_history=not args.include_history,
        batch_size=args.batch_size,
    )
    if not all(math.isfinite(score) for score in recommendation.scores):
        raise CLIError(f"the scores are NaN/inf although the weights in {args.model} are finite: the backbone "
                       f"{model.config.llm_name_or_path} overflows; try --dtype float32")
    rows = list(zip(recommendation.item_ids, recommendation.titles, recommendation.scores))
    id_width = max([len("item id"), *(len(item) for item, _, _ in rows)])
    title_width = max([len("title"), *(len(title) for _, title, _ in rows)])
    print(f"{'rank':>4}  {'item id':<{id_width}}  {'title':<{title_width}}  {'score':>9}")
    for rank, (item, title, score) in enumerate(rows, start=1):
        print(f"{rank:>4}  {item:<{id_width}}  {title:<{title_width}}  {score:>9.4f}")
    return 0
