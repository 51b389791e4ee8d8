"""`llm-srec probe`: the paper's sequence-understanding probes on a saved model, written as report.md, PNG figures
and probe.json (the model card's probe section).

Typical runs:

    llm-srec probe --model runs/llm-srec --data data/scientific --output-dir runs/probe --train-shuffled
    llm-srec probe --model runs/llm-srec --data data/scientific --output-dir runs/probe \\
        --shuffled-model runs/probe/shuffled-model --ablation no_uniformity --update-model-card

``--train-shuffled`` trains the probed model's recipe on once-shuffled training histories (saved to
OUTPUT_DIR/shuffled-model, reusable later with ``--shuffled-model``); ``--ablation`` trains an ablation on the original
and the shuffled histories (OUTPUT_DIR/ablations/NAME/{original,shuffled}, each probeable on its own later).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llm_srec.cli._errors import CLIError
from llm_srec.cli._arguments import check_output_folder, non_negative_int, positive_int

SHUFFLED_MODEL_DIR = "shuffled-model"
ABLATIONS_DIR = "ablations"
REPORT_FILE = "report.md"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # No library import here (the CLI's rule): names are validated in `run`, before any model is loaded.
    parser = subparsers.add_parser(
        "probe",
        help="Does the model use the order of a history? Shuffled training/inference, similarity, breakdowns.",
        description="Run the paper's sequence-understanding probes (§2.3, §4.1) on a saved LLM-SRec or SASRec model "
        "and write OUTPUT_DIR/report.md, PNG figures and OUTPUT_DIR/probe.json. An LLM-SRec model is compared with "
        "its SASRec teacher (or --sasrec) and an order-blind control.",
    )
    parser.add_argument("--model", required=True, type=Path,
                        help="Saved LLM-SRec or SASRec folder, trained on original sequences.")
    parser.add_argument("--data", required=True, type=Path, help="Prepared data folder the model was trained on.")
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="Where to write report.md, the figures and probe.json.")
    parser.add_argument("--sasrec", type=Path, default=None,
                        help="SASRec folder to compare an LLM-SRec model with (default: the model's own teacher).")
    shuffled = parser.add_mutually_exclusive_group()
    shuffled.add_argument("--shuffled-model", type=Path, default=None,
                          help="The same recipe trained on shuffled training histories (as --train-shuffled writes), "
                          "for the shuffled-training table.")
    shuffled.add_argument("--train-shuffled", action="store_true",
                          help="Train that model first with the training pipeline and the arguments recorded in "
                          f"MODEL/training_args.json, into OUTPUT_DIR/{SHUFFLED_MODEL_DIR}.")
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME",
                        help="(LLM-SRec) also train this ablation on original and on shuffled training histories, into "
                        f"OUTPUT_DIR/{ABLATIONS_DIR}/NAME/, and probe it: no_distillation_uniformity (Table 8 a), "
                        "no_uniformity (Table 8 b) or contrastive_distillation (Table 12). Repeatable.")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="Seed of the per-user history shuffles (default 0).")
    parser.add_argument("--protocol", action="append", default=None, metavar="{sampled,full}",
                        help="Ranking protocol(s): sampled and/or full (default: both). Repeatable.")
    parser.add_argument("--num-negatives", type=positive_int, default=99,
                        help="Negatives of the sampled protocol (99).")
    parser.add_argument("--eval-seed", type=non_negative_int, default=0,
                        help="Seed of the sampled negatives and of the --max-users subset (default 0).")
    parser.add_argument("--max-users", type=positive_int, default=None,
                        help="Probe a seeded subset of this many test users.")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="Users / items per forward pass (64).")
    parser.add_argument("--device", default=None, help="Torch device (default: cuda when available, else cpu).")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                        help="LLM-SRec backbone dtype (default: the model config's backbone_dtype).")
    parser.add_argument("--update-model-card", action="store_true",
                        help="Also store probe.json in MODEL and re-render its model card.")
    parser.set_defaults(func=run)
    return parser


def _load(path: Path, like: Any | None, backbone_kwargs: dict[str, Any]) -> Any:
    """Load a saved model; an LLM-SRec model on ``like``'s backbone shares it (one backbone in memory) when neither
    has a LoRA adapter and both name the same backbone."""
    from llm_srec.modeling import LLMSRecForRecommendation
    from llm_srec.training.pipeline import load_model

    config_file = path / "config.json"
    if not config_file.is_file():
        raise CLIError(f"{path} is not a saved model folder (no config.json)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    shareable = (
        isinstance(like, LLMSRecForRecommendation) and like.config.lora_config is None
        and config.get("lora_config") is None and config.get("llm_name_or_path") == like.config.llm_name_or_path
    )
    return load_model(path, llm=like.llm) if shareable else load_model(path, **backbone_kwargs)


def _check_data(model: Any, data: Any, path: Path) -> None:
    from llm_srec.modeling import LLMSRecForRecommendation

    if isinstance(model, LLMSRecForRecommendation):
        catalog = model.processor.item_catalog if model.processor is not None else None
        if catalog != data.catalog:
            raise CLIError(f"{path}: the model's item catalog differs from the data's; probe it on its own data")
    elif model.config.num_items != data.num_items:
        raise CLIError(f"{path} knows {model.config.num_items} items but the data has {data.num_items}")


def run(args: argparse.Namespace) -> int:
    import torch

    from llm_srec.evaluation.probe_plots import plot_probe
    from llm_srec.evaluation.probe_report import render_report
    from llm_srec.training.probe_training import ABLATION_VARIANTS, train_ablation, train_shuffled_counterpart
    from llm_srec.training.recipes import ablation_config_overrides
    from llm_srec.evaluation.probes import probe_subjects, run_probes
    from llm_srec.evaluation.metrics import PROTOCOLS, protocol_labels
    from llm_srec.hub import PROBE_FILE, write_model_card
    from llm_srec.modeling import LLMSRecForRecommendation, SASRecModel
    from llm_srec.training.pipeline import load_data

    check_output_folder(args.output_dir)  # before minutes of probing, not after
    protocols = args.protocol or PROTOCOLS
    protocol_labels(protocols, args.num_negatives, args.eval_seed)  # a ValueError names a wrong protocol
    for name in args.ablation:
        ablation_config_overrides(name)  # a ValueError lists the ablations
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone_kwargs = {"dtype": args.dtype} if args.dtype else {}
    data = load_data(args.data)
    model = _load(args.model, None, backbone_kwargs).to(device)
    _check_data(model, data, args.model)
    is_llm_srec = isinstance(model, LLMSRecForRecommendation)
    if not is_llm_srec and (args.sasrec is not None or args.ablation):
        raise CLIError("--sasrec and --ablation apply to an LLM-SRec model; MODEL is a SASRec model")

    sasrec = None
    if args.sasrec is not None:
        sasrec = _load(args.sasrec, None, {})
        if not isinstance(sasrec, SASRecModel):
            raise CLIError(f"--sasrec {args.sasrec} is not a SASRec model folder")
        _check_data(sasrec, data, args.sasrec)
        sasrec = sasrec.to(device)

    shuffled = None
    if args.shuffled_model is not None:
        shuffled = _load(args.shuffled_model, model, backbone_kwargs)
        if type(shuffled) is not type(model):
            raise CLIError(f"--shuffled-model {args.shuffled_model} is not a {type(model).__name__} like MODEL")
        _check_data(shuffled, data, args.shuffled_model)
    elif args.train_shuffled:
        folder = args.output_dir / SHUFFLED_MODEL_DIR
        # trained models are reloaded from their folders on the probed model's backbone: one backbone in memory
        train_shuffled_counterpart(model, data, folder, args.seed, args.model, backbone_kwargs)
        shuffled = _load(folder, model, backbone_kwargs)

    ablations: dict[str, tuple[Any, Any]] = {}
    for name in dict.fromkeys(args.ablation):
        folder = args.output_dir / ABLATIONS_DIR / name
        train_ablation(model, data, name, folder, args.seed, args.model, backbone_kwargs)
        ablations[name] = tuple(_load(folder / variant, model, backbone_kwargs) for variant in ABLATION_VARIANTS)

    subjects = probe_subjects(model, sasrec, shuffled.to(device) if shuffled is not None else None, ablations)
    probe = run_probes(
        subjects,
        data,
        shuffle_seed=args.seed,
        protocols=protocols,
        num_negatives=args.num_negatives,
        eval_seed=args.eval_seed,
        max_users=args.max_users,
        batch_size=args.batch_size,
        show_progress=True,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / PROBE_FILE).write_text(json.dumps(probe, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    figures = plot_probe(probe, args.output_dir)
    report = args.output_dir / REPORT_FILE
    report.write_text(render_report(probe, [figure.name for figure in figures]), encoding="utf-8")
    if args.update_model_card:
        write_model_card(args.model, probe=probe)
    for path in (report, args.output_dir / PROBE_FILE, *figures):
        print(path)
    return 0
