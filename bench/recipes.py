"""Recipe comparison: LLM-SRec recipes and their levers against one fixed SASRec teacher, several seeds.

The real `LLMSRecForRecommendation` heads, losses, `LLMSRecCollator`, `LLMSRecTrainer` (validation-based model
selection: the best validation sampled HR@10, checked every ``--eval-every`` epoch (half), early stopping) and
`RankingEvaluator`, on ``--backbone``: ``oracle`` replaces the backbone's output-token states by oracle features
(`llm_srec.evaluation.oracle`; ``bench/oracle.py`` is this script with that default), any other name is a real
backbone of `common.backbone_path` (``minilm``, ``tiny-llama-ctrl`` ...).

Each variant is one change from its base recipe (`llm_srec.training.recipes`), run for every seed; the teacher is
one fixed SASRec per data set (`common.fixed_teacher`). The test ranking uses one seeded user subset for every
model, under ``sampled(1+99, seed=0)`` and ``full-catalog``. Results go to ``bench/results/<backbone>_<dataset>.json``
after every run (a rerun skips finished runs; ``--fresh`` starts over). The last stdout line is one JSON object:
``{"variant": best, "llm_srec": {protocol: metrics}, "teacher": {protocol: metrics}, "paper": ...}`` (means over
seeds; ``best`` is the variant with the highest mean sampled NDCG@10).

Usage:
    python bench/recipes.py --backbone minilm --dataset ml-100k --variants paper transfer --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, WORK_DIR, backbone_config_kwargs, backbone_path, build_model, fixed_teacher, load_dataset,
    machine_info, set_threads, write_json,
)

from llm_srec.evaluation.oracle import attach_oracle  # noqa: E402
from llm_srec.evaluation.ranking import RankingEvaluator  # noqa: E402
from llm_srec.training import LLMSRecTrainer, LLMSRecTrainingArguments, checkpointing  # noqa: E402
from llm_srec.training.probe_training import shuffled_training_data  # noqa: E402
from llm_srec.training.recipes import RECIPES  # noqa: E402

SAMPLED = "sampled(1+99, seed=0)"
# LoRA on the backbone's attention projections (Llama names), the issue-19 lever "transfer + LoRA".
LORA_R8 = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
FULL = "full-catalog"
# name -> (base recipe, oracle features, config overrides, training overrides): one lever per row. The oracle
# features are ignored on a real backbone.
VARIANTS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "paper": ("paper", "teacher", {}, {}),
    "paper/retrieval-only": ("paper", "teacher", {"distillation_loss_weight": 0.0, "uniformity_loss_weight": 0.0}, {}),
    "paper/in-batch": ("paper", "teacher", {"in_batch_negatives": True}, {}),
    "paper/cosine-t0.1": ("paper", "teacher", {"similarity": "cosine", "retrieval_temperature": 0.1}, {}),
    "paper/score-distill": ("paper", "teacher", {"score_distillation_loss_weight": 1.0}, {}),
    "paper/item-distill-fixed": ("paper", "teacher", {"item_distillation_loss_weight": 1.0, "teacher_projection": "fixed"},
                                 {}),
    "paper/all-positions": ("paper", "teacher", {}, {"train_mode": "all"}),
    "transfer": ("transfer", "teacher", {}, {}),
    "transfer/no-score-distill": ("transfer", "teacher", {"score_distillation_loss_weight": 0.0}, {}),
    "transfer/no-in-batch": ("transfer", "teacher", {"in_batch_negatives": False}, {}),
    "transfer/dot": ("transfer", "teacher", {"similarity": "dot", "retrieval_temperature": 1.0}, {}),
    "transfer/all-positions": ("transfer", "teacher", {}, {"train_mode": "all"}),
    "transfer/score-distill-x4": ("transfer", "teacher", {"score_distillation_loss_weight": 4.0}, {}),
    "transfer/score-distill-x16": ("transfer", "teacher", {"score_distillation_loss_weight": 16.0}, {}),
    "transfer/score-distill-only": ("transfer", "teacher", {"score_distillation_loss_weight": 1.0,
                                                            "retrieval_loss_weight": 0.0,
                                                            "distillation_loss_weight": 0.0,
                                                            "uniformity_loss_weight": 0.0}, {}),
    "transfer/score-distill-x16+all-positions": ("transfer", "teacher", {"score_distillation_loss_weight": 16.0},
                                                  {"train_mode": "all"}),
    "transfer/score-distill-x16+teacher-neg8": ("transfer", "teacher", {"score_distillation_loss_weight": 16.0},
                                                 {"num_teacher_negatives": 8}),
    "transfer/score-distill-T4": ("transfer", "teacher", {"score_distillation_temperature": 4.0}, {}),
    "transfer/fixed-item-distill": ("transfer", "teacher", {"teacher_projection": "fixed",
                                                            "item_distillation_loss_weight": 1.0}, {}),
    "transfer/lr1e-3": ("transfer", "teacher", {}, {"learning_rate": 1e-3}),
    "transfer/bag": ("transfer", "bag", {}, {}),
    "paper/bag": ("paper", "bag", {}, {}),
    "paper/no-distill": ("paper", "teacher", {"distillation_loss_weight": 0.0, "uniformity_loss_weight": 0.0}, {}),
    "transfer/lora-r8": ("transfer", "teacher", {"lora_config": LORA_R8}, {}),
}
QUICK_VARIANTS = ["paper", "transfer", "transfer/bag"]


def train_args(folder: Path, recipe: str, overrides: dict[str, Any], args, seed: int) -> LLMSRecTrainingArguments:
    settings = {
        "output_dir": str(folder / "checkpoints"), "num_train_epochs": args.epochs,
        "eval_every_epoch_fraction": args.eval_every,
        "early_stopping_patience": args.patience, "max_eval_users": args.val_users,
        "per_device_eval_batch_size": args.eval_batch_size,
        "save_total_limit": 1, "report_to": [], "disable_tqdm": True, "seed": seed, "dataloader_num_workers": 0,
        "use_cpu": not torch.cuda.is_available(), "eval_protocols": ["sampled"],
        **({"learning_rate": args.lr} if args.lr is not None else {}),
        **({"per_device_train_batch_size": args.batch_size} if args.batch_size is not None else {}),
        # a float < 1 is a ratio; the recipes' constant schedule would ignore a warm-up
        **({"warmup_steps": args.warmup_ratio, "lr_scheduler_type": "constant_with_warmup"}
           if args.warmup_ratio is not None else {}),
        **({"gradient_checkpointing": True} if args.gradient_checkpointing else {}),
        **({"max_steps": args.max_steps} if args.max_steps is not None else {}),
        **overrides,
    }
    return RECIPES[recipe].training_arguments(**settings)


def mean_std(runs: list[dict[str, Any]], protocol: str, metric: str) -> dict[str, float]:
    values = [run["test"][protocol][metric] for run in runs]
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "n": len(values)}


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per variant: mean ± std over seeds of NDCG@10/HR@10 under both protocols, and the ratio to the teacher."""
    teacher = result["teacher"]["test"]
    table = {}
    for name in result["runs_by_variant"]:
        runs = list(result["runs_by_variant"][name].values())
        row = {}
        for protocol in (SAMPLED, FULL):
            for metric in ("NDCG@10", "HR@10"):
                stats = mean_std(runs, protocol, metric)
                stats["vs_teacher"] = round(stats["mean"] / teacher[protocol][metric], 3)
                row[f"{protocol}/{metric}"] = stats
        table[name] = row
    runs_by_variant = result["runs_by_variant"]
    for name, row in table.items():
        original = runs_by_variant.get(name.removesuffix("@shuffled"), {})
        seeds = sorted(set(original) & set(runs_by_variant[name])) if name.endswith("@shuffled") else []
        if seeds:  # the same seeds on both sides: a shuffled run is compared with its own original run
            before = statistics.fmean(original[seed]["test"][SAMPLED]["NDCG@10"] for seed in seeds)
            after = statistics.fmean(runs_by_variant[name][seed]["test"][SAMPLED]["NDCG@10"] for seed in seeds)
            row["shuffled_training_change"] = round((after - before) / before, 4)
    result["summary"] = table
    return table


def has_complete_checkpoint(folder: str) -> bool:
    """Whether an interrupted run left a checkpoint to resume from (a killed session continues where it was)."""
    return bool(checkpointing.survey_checkpoints(folder)[0])


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def save_result(out_path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` under a lock, first taking in the runs and commands that other invocations (other seeds or
    variants running in parallel) wrote meanwhile; returns the merged result."""
    with open(out_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = json.loads(out_path.read_text()) if out_path.is_file() else {}
        for variant, runs in on_disk.get("runs_by_variant", {}).items():
            for other_seed, other in runs.items():
                result["runs_by_variant"].setdefault(variant, {}).setdefault(other_seed, other)
        for command in on_disk.get("commands", []):
            if command not in result["commands"]:
                result["commands"].insert(0, command)
        summarise(result)
        write_json(out_path, result)
    return result


def main(default_backbone: str = "oracle", description: str | None = None) -> None:
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scientific", choices=("scientific", "ml-100k"))
    parser.add_argument("--backbone", default=default_backbone,
                        help="'oracle' (teacher vectors instead of backbone states) or a common.backbone_path name")
    parser.add_argument("--max-prompt-length", type=int, default=None,
                        help="token budget of a prompt (default: the backbone's position limit, at most 1024)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None, help="training users per step (default: the recipe's)")
    parser.add_argument("--warmup-ratio", type=float, default=None, help="linear warm-up share of the steps")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute the backbone's activations in the backward pass (memory for compute)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--patience", type=int, default=4, help="validations without improvement")
    parser.add_argument("--eval-every", type=float, default=0.5, help="validation every this fraction of an epoch")
    parser.add_argument("--val-users", type=int, default=1000)
    parser.add_argument("--eval-batch-size", type=int, default=256,
                        help="users (and items) per ranking batch; SmolLM2 at 256 x 380 tokens peaks at 17 GB")
    parser.add_argument("--eval-users", type=int, default=1000, help="seeded test-user subset (same for all models)")
    parser.add_argument("--teacher-epochs", type=int, default=100)
    parser.add_argument("--histories", nargs="+", default=["original"], choices=["original", "shuffled"],
                        help="train on the original and/or once-shuffled training histories (the shuffled-training "
                             "probe; runs on shuffled histories are keyed '<variant>@shuffled'; test is original)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimisation steps per run (CPU budget)")
    parser.add_argument("--quick", action="store_true", help="3 variants, 1 seed, 2 epochs: <= 10 min on 2 CPU cores")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.variants, args.seeds, args.epochs, args.teacher_epochs = QUICK_VARIANTS, [0], 2.0, 30
    out_path = args.out or RESULTS_DIR / f"{args.backbone}_{args.dataset}{'_quick' if args.quick else ''}.json"
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() and not args.fresh else {}
    result.update({
        "benchmark": ("oracle capacity check: LLM-SRec heads/losses/Trainer/evaluator on the teacher's own vectors"
                      if args.backbone == "oracle" else f"recipe comparison on the {args.backbone} backbone"),
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    })
    result.setdefault("runs_by_variant", {})
    if result["command"] not in result.setdefault("commands", []):
        result["commands"].append(result["command"])  # every invocation that contributed runs to this file
    started = time.perf_counter()
    data = load_dataset(args.dataset)
    result["data"] = data.statistics()
    evaluator = RankingEvaluator(data.splits["test"], data.num_items, ("sampled", "full"), num_negatives=99,
                                 seed=0, max_users=args.eval_users, batch_size=args.eval_batch_size)
    teacher, teacher_info = fixed_teacher(args.dataset, data, epochs=args.teacher_epochs)
    result["teacher"] = {**teacher_info, "test": evaluator.evaluate(teacher, show_progress=False),
                         "hidden_size": teacher.config.hidden_size,
                         "max_position_embeddings": teacher.config.max_position_embeddings}
    result["evaluation"] = {"split": "test", "users": evaluator.num_users, "protocols": [SAMPLED, FULL],
                            "selection": f"best validation {SAMPLED}/HR@10 (at most {args.val_users} seeded "
                                         f"validation users), every {args.eval_every} epoch"}
    result = save_result(out_path, result)
    oracle = args.backbone == "oracle"
    # The oracle's heads read teacher vectors: its backbone (never run) has the teacher's hidden size, 64.
    backbone = backbone_path("tiny-llama-ctrl" if oracle else args.backbone, data)
    prompt_budget = backbone_config_kwargs(backbone)
    if args.max_prompt_length is not None:
        prompt_budget["max_prompt_length"] = min(prompt_budget["max_prompt_length"], args.max_prompt_length)
    result["prompt_budget"] = prompt_budget
    shuffled = shuffled_training_data(data, 0) if "shuffled" in args.histories else None
    stages = [(name, history) for history in args.histories for name in args.variants]
    for variant, history in stages:
        recipe, features, config_overrides, training_overrides = VARIANTS[variant]
        name = variant if history == "original" else f"{variant}@shuffled"
        training_data = data if history == "original" else shuffled
        runs = result["runs_by_variant"].setdefault(name, {})
        for seed in args.seeds:
            if str(seed) in runs:
                continue
            start = time.perf_counter()
            config_kwargs = {**prompt_budget, **RECIPES[recipe].config_kwargs(config_overrides)}
            model = build_model(data, backbone, sasrec=copy.deepcopy(teacher), seed=seed, **config_kwargs)
            if oracle:
                attach_oracle(model, features)
            folder = WORK_DIR / out_path.stem / name.replace("/", "_") / f"seed{seed}"  # one run folder per result file
            trainer = LLMSRecTrainer(model, train_args(folder, recipe, training_overrides, args, seed),
                                     train_dataset=training_data.splits["train"],
                                     eval_dataset=training_data.splits["validation"])
            resumable = has_complete_checkpoint(trainer.args.output_dir)
            train_output = trainer.train(resume_from_checkpoint=True if resumable else None)
            model = trainer.model.eval()
            best = trainer.state.best_metric
            steps = trainer.state.global_step
            validation_seconds = [entry["eval_runtime"] for entry in trainer.state.log_history
                                  if "eval_runtime" in entry]
            del trainer
            test_start = time.perf_counter()
            test_metrics = evaluator.evaluate(model, show_progress=False)
            record = {
                "features": features if oracle else None, "recipe": recipe, "config_overrides": config_overrides,
                "training_overrides": training_overrides, "steps": steps, "best_validation_HR@10": best,
                "resumed": resumable, "seconds": round(time.perf_counter() - start, 1),
                "train_seconds": round(train_output.metrics["train_runtime"], 1),
                "seconds_per_step": round(train_output.metrics["train_runtime"] / max(1, steps), 2),
                "validation_seconds": [round(value, 1) for value in validation_seconds],
                "test_seconds": round(time.perf_counter() - test_start, 1),
                "peak_rss_mb": peak_rss_mb(), "machine": machine_info(),
                "test": test_metrics,
            }
            runs[str(seed)] = record
            result = save_result(out_path, result)
            runs = result["runs_by_variant"][name]
            print(json.dumps({"variant": name, "seed": seed, **runs[str(seed)]["test"][SAMPLED]}), flush=True)
    result["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    table = save_result(out_path, result)["summary"]
    teacher_variants = [name for name in table if "@" not in name
                        and (not oracle or VARIANTS.get(name, ("", "teacher"))[1] == "teacher")]
    best = max(teacher_variants, key=lambda name: table[name][f"{SAMPLED}/NDCG@10"]["mean"])
    mean_metrics = {
        protocol: {metric: mean_std(list(result["runs_by_variant"][best].values()), protocol, metric)["mean"]
                   for metric in result["teacher"]["test"][protocol]}
        for protocol in (SAMPLED, FULL)
    }
    print(json.dumps({"variant": best, "llm_srec": mean_metrics, "teacher": result["teacher"]["test"],
                      "paper": {protocol: {metric: mean_std(list(result["runs_by_variant"]["paper"].values()),
                                                            protocol, metric)["mean"]
                                           for metric in result["teacher"]["test"][protocol]}
                                for protocol in (SAMPLED, FULL)} if "paper" in table else None}))


if __name__ == "__main__":
    main()
