"""Accuracy on real data: SASRec teacher vs LLM-SRec vs the no-distillation ablation, plus the shuffled-training probe.

For one data set (default: the UniSRec Amazon "Scientific" set in ../shared/data/amazon-scientific-unisrec):

1. pre-train the SASRec teacher with `pretrain_sasrec` (BCE, paper settings; best validation epoch kept);
2. for each backbone (``minilm``: the real pretrained all-MiniLM-L6-v2; ``tiny-llama-ctrl``: a random-initialised
   tiny causal Llama from `build_tiny_backbone`, the control) train with `build_llm_srec` + `LLMSRecTrainer` (what `train_llm_srec` does, plus a loss-log callback):
   - LLM-SRec (retrieval + distillation + uniformity, weights 1/1/1),
   - the ablation "w/o L_Distill, L_Uniform" (retrieval only; `training.recipes.ABLATIONS["no_distillation_uniformity"]`),
   and, for the backbones in ``--shuffle-backbones``, both again on once-shuffled training histories
   (`training.probe_training.shuffled_training_data`, seed 0; the frozen teacher is the same one);
3. rank the test users under both protocols, ``sampled(1+99, seed=0)`` and ``full-catalog``, with the same
   evaluator (same users, same candidate lists) for every model.

CPU budget: every LLM-SRec run trains a fixed number of optimisation steps (``--steps``; no validation-based
selection, the final weights are evaluated) and the test ranking uses a seeded subset of ``--eval-users`` users (the
same subset for every model; `RankingEvaluator(max_users=...)`); the teacher is also ranked on all test users. Before
training, a few steps and one item batch are timed per backbone and the projected run time is recorded
(``estimate``). Results go to ``bench/results/accuracy_<dataset>.json`` after every stage; a rerun skips finished
stages (delete the file, or pass ``--fresh``, to start over).

Targets (issue 8): LLM-SRec >= 5% relative above its SASRec teacher on NDCG@10 under sampled(1+99); above the
ablation; and more order-sensitive than the ablation (a larger drop of NDCG@10 when trained on shuffled histories).

Usage:
    python bench/accuracy.py                         # scientific, minilm + tiny-llama-ctrl
    python bench/accuracy.py --dataset ml-100k --steps 300
    python bench/accuracy.py --quick                 # smoke run: tiny control only, few steps, 100 users
"""

from __future__ import annotations

import argparse
import copy
import json

import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, WORK_DIR, backbone_config_kwargs, backbone_path, load_dataset, machine_info, set_threads, write_json,
)

from llm_srec.data import LLMSRecCollator  # noqa: E402
from llm_srec.evaluation.probes import change_ratio, compare_metrics  # noqa: E402
from llm_srec.training.probe_training import shuffled_training_data  # noqa: E402
from llm_srec.training.recipes import ablation_config_overrides  # noqa: E402
from llm_srec.evaluation.ranking import RankingEvaluator  # noqa: E402
from llm_srec.training import LLMSRecTrainer, LLMSRecTrainingArguments, SASRecTrainingArguments  # noqa: E402
from llm_srec.training.pipeline import build_llm_srec, load_model, pretrain_sasrec  # noqa: E402

SAMPLED = "sampled(1+99, seed=0)"
FULL = "full-catalog"
VARIANTS = {
    "llm-srec": {},
    "no-distill": ablation_config_overrides("no_distillation_uniformity"),
    # The code's L_Distill averages (a - b)^2 over the d' = 128 elements of two unit vectors, i.e. (2 - 2 cos) / 128.
    # Weighting it by 128 makes it their squared distance, 2 - 2 cos: the same term at the scale of L_Retrieval.
    "distill-x128": {"distillation_loss_weight": 128.0},
}
DEFAULT_VARIANTS = ["llm-srec", "no-distill"]
TARGET_REL_GAIN = 0.05


def llm_args(out: Path, steps: int, lr: float, batch: int, seed: int) -> LLMSRecTrainingArguments:
    return LLMSRecTrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=steps, learning_rate=lr, per_device_train_batch_size=batch,
        eval_strategy="no", save_strategy="no", eval_every_epoch_fraction=None, load_best_model_at_end=False,
        early_stopping_patience=None, logging_steps=max(1, min(25, steps // 4)), report_to=[], disable_tqdm=True,
        seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )


def estimate(data, backbone: str, batch: int, steps: int, eval_users: int, config_kwargs: dict) -> dict[str, Any]:
    """Time 3 training steps and 2 item-encoding batches of 64 on this backbone; project a run's cost."""
    teacher_config = {"num_items": data.num_items}
    from llm_srec.modeling import SASRecConfig, SASRecModel

    model = build_llm_srec(data, SASRecModel(SASRecConfig(**teacher_config, max_position_embeddings=50)), backbone,
                           config_kwargs)
    collator = LLMSRecCollator(model.processor, sasrec_maxlen=50, num_negatives=3, seed=0)
    train = data.splits["train"]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    step_times = []
    model.train()
    for index in range(4):
        rows = [train[(index * batch + i) * 37 % len(train)] for i in range(batch)]
        start = time.perf_counter()
        outputs = model(**collator(rows))
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_times.append(time.perf_counter() - start)
    model.eval()
    encode_times = []
    with torch.no_grad():
        for start_id in (1, 65):
            start = time.perf_counter()
            items = model.processor.encode_items(list(range(start_id, start_id + 64)))
            model.encode_items(items["input_ids"], items["attention_mask"], items["item_ids"])
            encode_times.append((time.perf_counter() - start) / 64)
        users = [list(row["history"]) for row in data.splits["test"].select(range(32))]
        start = time.perf_counter()
        batch_users = model.processor(users)
        model.encode_users(batch_users["input_ids"], batch_users["attention_mask"], batch_users["history_item_ids"])
        user_time = (time.perf_counter() - start) / 32
    step = sorted(step_times[1:])[1]
    item = min(encode_times)
    projected = steps * step + data.num_items * item + eval_users * user_time
    return {"step_seconds_median": round(step, 3), "item_encode_seconds": round(item, 4),
            "user_encode_seconds": round(user_time, 4), "projected_run_seconds": round(projected, 1)}


class LossRecorder(TrainerCallback):
    """Keeps the logged losses (retrieval / distillation / uniformity)."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.rows.append({"step": state.global_step, **{k: round(float(v), 5) for k, v in logs.items()
                                                            if "loss" in k}})


class LearningCurve(TrainerCallback):
    """Ranks the test users at chosen steps: does more training close the gap?"""

    def __init__(self, evaluator: RankingEvaluator, steps: list[int]):
        self.evaluator = evaluator
        self.steps = set(steps)
        self.rows: list[dict[str, Any]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            started = time.perf_counter()
            metrics = self.evaluator.evaluate(model, show_progress=False)
            self.rows.append({"step": state.global_step, "eval_seconds": round(time.perf_counter() - started, 1),
                              "test": metrics})
            print(json.dumps({"curve_step": state.global_step, **metrics[SAMPLED]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scientific", choices=("scientific", "ml-100k"))
    parser.add_argument("--backbones", nargs="+", default=["minilm", "tiny-llama-ctrl"])
    parser.add_argument("--shuffle-backbones", nargs="*", default=["tiny-llama-ctrl"],
                        help="backbones that also train on shuffled histories (run after every original run)")
    parser.add_argument("--steps", type=int, default=80, help="optimisation steps per LLM-SRec run (minilm)")
    parser.add_argument("--control-steps", type=int, default=600, help="steps per run of the random tiny control")
    parser.add_argument("--max-prompt-length", type=int, default=192,
                        help="token budget of a prompt (the oldest shown history items are dropped first)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--eval-users", type=int, default=1000, help="seeded test-user subset (same for all models)")
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--teacher-patience", type=int, default=4)
    parser.add_argument("--teacher-maxlen", type=int, default=50)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                        help="which of LLM-SRec / the ablation / LLM-SRec with L_Distill x128 to train (run "
                             "invocations in parallel to split them)")
    parser.add_argument("--histories", nargs="+", default=["original", "shuffled"], choices=["original", "shuffled"],
                        help="train on the original and/or the once-shuffled training histories")
    parser.add_argument("--no-teacher-shuffled", action="store_true",
                        help="skip SASRec on shuffled histories (e.g. when a parallel invocation trains it)")
    parser.add_argument("--curve-steps", nargs="*", type=int, default=[],
                        help="also rank the test users at these steps (a learning curve, recorded per run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="ignore finished stages in the result file")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default $LLM_SREC_BENCH_THREADS or 1; 0 = torch's default)")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.backbones, args.shuffle_backbones = ["tiny-llama-ctrl"], ["tiny-llama-ctrl"]
        args.steps, args.control_steps, args.eval_users, args.teacher_epochs = 6, 6, 100, 1
    out_path = args.out or RESULTS_DIR / f"accuracy_{args.dataset}{'_quick' if args.quick else ''}.json"
    work = WORK_DIR / f"accuracy_{args.dataset}{'_quick' if args.quick else ''}"
    result: dict[str, Any] = {}
    if out_path.is_file() and not args.fresh:
        result = json.loads(out_path.read_text())
    result.update({
        "benchmark": "accuracy on real data: SASRec teacher vs LLM-SRec vs no-distillation ablation",
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    })
    result.setdefault("runs", {})
    result.setdefault("estimate", {})

    def save():
        """Write the result; runs finished meanwhile by another process on the same file are kept (flock)."""
        import fcntl

        out_path.parent.mkdir(parents=True, exist_ok=True)
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        with open(WORK_DIR / f"{out_path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if out_path.is_file():
                on_disk = json.loads(out_path.read_text())
                for key, run in on_disk.get("runs", {}).items():
                    result["runs"].setdefault(key, run)
                for key in ("teacher_shuffled",):
                    if key in on_disk and key not in result:
                        result[key] = on_disk[key]
                commands = on_disk.get("commands", [])
                if result["command"] not in commands:
                    commands.append(result["command"])
                result["commands"] = commands
                summarise(result)
            write_json(out_path, result)

    started = time.perf_counter()
    data = load_dataset(args.dataset)
    result["data"] = data.statistics()
    evaluator = RankingEvaluator(data.splits["test"], data.num_items, ("sampled", "full"), num_negatives=99,
                                 seed=0, max_users=args.eval_users, batch_size=64)
    result["evaluation"] = {"split": "test", "users": evaluator.num_users, "of_users": len(data.splits["test"]),
                            "subset": f"seeded random subset (numpy default_rng(0)) of {evaluator.num_users} users"
                            if evaluator.num_users < len(data.splits["test"]) else "all test users",
                            "protocols": [SAMPLED, FULL]}
    save()

    # ---------------------------------------------------------------------------------------------- teacher
    teacher_dir = work / "teacher"
    teacher_info = teacher_dir / "bench_teacher.json"
    if teacher_info.is_file() and (teacher_dir / "config.json").is_file():
        result["teacher"] = json.loads(teacher_info.read_text())  # trained by an earlier invocation
    elif "teacher" in result and (teacher_dir / "config.json").is_file():
        write_json(teacher_info, result["teacher"])
    else:
        start = time.perf_counter()
        t_args = SASRecTrainingArguments(
            output_dir=str(teacher_dir / "checkpoints"), num_train_epochs=args.teacher_epochs,
            early_stopping_patience=args.teacher_patience, per_device_eval_batch_size=512, report_to=[],
            disable_tqdm=True, seed=args.seed, use_cpu=not torch.cuda.is_available(), eval_protocols=["sampled"],
            save_total_limit=1,
        )
        teacher = pretrain_sasrec(data, teacher_dir, args=t_args, config={"max_position_embeddings": args.teacher_maxlen},
                                  evaluate_test=False)
        result["teacher"] = {
            "train_seconds": round(time.perf_counter() - start, 1),
            "config": {k: v for k, v in teacher.config.to_dict().items()
                       if k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings",
                                "hidden_dropout_prob", "loss_type")},
            "validation_trajectory": validation_trajectory(teacher_dir),
            "test": evaluator.evaluate(teacher, show_progress=False),
            "test_all_users": RankingEvaluator(data.splits["test"], data.num_items, ("sampled", "full"), 99, 0,
                                               None, 512).evaluate(teacher, show_progress=False),
        }
        write_json(teacher_info, result["teacher"])
        save()
    teacher = load_model(teacher_dir)

    # ------------------------------------------------------------------------------------------- LLM-SRec runs
    shuffled_data = shuffled_training_data(data, 0)
    stages = [(name, "original", data) for name in args.backbones] if "original" in args.histories else []
    if args.shuffle_backbones and "shuffled" in args.histories and not args.no_teacher_shuffled:
        stages += [("teacher-shuffled", None, None)]
    if "shuffled" in args.histories:
        stages += [(name, "shuffled", shuffled_data) for name in reversed(args.backbones)
                   if name in args.shuffle_backbones]
    for backbone_name, training_name, training_data in stages:
        if backbone_name == "teacher-shuffled":
            run_teacher_shuffled(result, data, teacher, evaluator, work, args, save)
            continue
        backbone = backbone_path(backbone_name, data)
        config_kwargs = {**backbone_config_kwargs(backbone)}
        config_kwargs["max_prompt_length"] = min(config_kwargs["max_prompt_length"], args.max_prompt_length)
        steps = args.steps if backbone_name == "minilm" else args.control_steps
        if backbone_name not in result["estimate"]:
            result["estimate"][backbone_name] = estimate(data, backbone, args.batch_size, steps,
                                                         evaluator.num_users, config_kwargs)
            save()
            print(json.dumps({backbone_name: result["estimate"][backbone_name]}), flush=True)
        for variant, overrides in VARIANTS.items():
            if variant not in args.variants:
                continue
            key = f"{backbone_name}/{variant}/{training_name}"
            done = result["runs"].get(key)
            budget = config_kwargs["max_prompt_length"]
            if done and done["steps"] == steps and done.get("max_prompt_length") == budget:
                continue
            folder = work / backbone_name / variant / training_name
            recorder = LossRecorder()
            curve = LearningCurve(evaluator, [step for step in args.curve_steps if step < steps])
            start = time.perf_counter()
            model = build_llm_srec(training_data, copy.deepcopy(teacher), backbone,
                                   {**config_kwargs, **overrides}, seed=args.seed)
            trainer = LLMSRecTrainer(
                model, llm_args(folder, steps, args.lr, args.batch_size, args.seed),
                train_dataset=training_data.splits["train"], callbacks=[recorder, curve],
                model_card_kwargs={"data_statistics": training_data.statistics(),
                                   "backbone_random_init": backbone_name != "minilm"},
            )
            trainer.train()
            trainer.save_model(str(folder))
            model = trainer.model.eval()
            del trainer
            train_seconds = time.perf_counter() - start - sum(row["eval_seconds"] for row in curve.rows)
            start = time.perf_counter()
            metrics = evaluator.evaluate(model, show_progress=False)
            result["runs"][key] = {
                "backbone": backbone_name,
                "variant": variant,
                "training_histories": training_name,
                "loss_weights": {k: getattr(model.config, k) for k in
                                 ("retrieval_loss_weight", "distillation_loss_weight", "uniformity_loss_weight")},
                "steps": steps,
                "max_prompt_length": config_kwargs["max_prompt_length"],
                "train_seconds": round(train_seconds, 1),
                "seconds_per_step": round(train_seconds / steps, 3),
                "eval_seconds": round(time.perf_counter() - start, 1),
                "loss_log": recorder.rows,
                "learning_curve": curve.rows,
                "test": metrics,
            }
            summarise(result)
            save()
            print(json.dumps({key: metrics[SAMPLED]}), flush=True)
            del model
    result["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    summarise(result)
    save()


def run_teacher_shuffled(result, data, teacher, evaluator, work, args, save) -> None:
    """SASRec trained on the once-shuffled training histories (the paper's Table 3 SASRec row)."""
    if "teacher_shuffled" not in result:
        start = time.perf_counter()
        folder = work / "teacher-shuffled"
        t_args = SASRecTrainingArguments(
            output_dir=str(folder / "checkpoints"), num_train_epochs=args.teacher_epochs,
            early_stopping_patience=args.teacher_patience, per_device_eval_batch_size=512, report_to=[],
            disable_tqdm=True, seed=args.seed, use_cpu=not torch.cuda.is_available(), eval_protocols=["sampled"],
            save_total_limit=1,
        )
        shuffled_teacher = pretrain_sasrec(shuffled_training_data(data, 0), folder, args=t_args,
                                           config=copy.deepcopy(teacher.config), evaluate_test=False)
        result["teacher_shuffled"] = {"train_seconds": round(time.perf_counter() - start, 1),
                                      "validation_trajectory": validation_trajectory(folder),
                                      "test": evaluator.evaluate(shuffled_teacher, show_progress=False)}
        save()


def validation_trajectory(folder: Path) -> list[dict[str, Any]]:
    """(epoch, validation sampled NDCG@10) of a SASRec run, from its last checkpoint's trainer_state.json."""
    states = sorted((folder / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                    key=lambda path: int(path.parent.name.split("-")[1]))
    if not states:
        return []
    history = json.loads(states[-1].read_text())["log_history"]
    key = f"eval_{SAMPLED}/NDCG@10"
    return [{"epoch": round(entry["epoch"], 2), "val_NDCG@10": round(entry[key], 4)} for entry in history if key in entry]


def summarise(result: dict[str, Any]) -> None:
    """Comparisons and target verdicts from whatever runs are finished."""
    runs = result.get("runs", {})
    teacher = result.get("teacher", {}).get("test")
    summary: dict[str, Any] = {}
    for backbone in sorted({run["backbone"] for run in runs.values()}):
        row: dict[str, Any] = {}
        full = runs.get(f"{backbone}/llm-srec/original")
        ablation = runs.get(f"{backbone}/no-distill/original")
        if full and teacher:
            ours, base = full["test"][SAMPLED]["NDCG@10"], teacher[SAMPLED]["NDCG@10"]
            gain = change_ratio(base, ours)
            row["llm_srec_vs_teacher"] = {"metric": f"NDCG@10 {SAMPLED}", "llm_srec": ours, "teacher": base,
                                          "relative_gain": gain, "target": f">= +{TARGET_REL_GAIN:.0%}",
                                          "met": gain is not None and gain >= TARGET_REL_GAIN}
        if full and ablation:
            ours, base = full["test"][SAMPLED]["NDCG@10"], ablation["test"][SAMPLED]["NDCG@10"]
            row["llm_srec_vs_ablation"] = {"metric": f"NDCG@10 {SAMPLED}", "llm_srec": ours, "ablation": base,
                                           "relative_gain": change_ratio(base, ours), "met": ours > base}
        probes = {}
        for variant in VARIANTS:
            original = runs.get(f"{backbone}/{variant}/original")
            shuffled = runs.get(f"{backbone}/{variant}/shuffled")
            if original and shuffled:
                probes[variant] = compare_metrics(original["test"], shuffled["test"], ["NDCG@10", "HR@10"])
        if probes:
            row["shuffled_training"] = probes
            if "llm-srec" in probes and "no-distill" in probes:
                a = probes["llm-srec"][SAMPLED]["NDCG@10"].get("change")
                b = probes["no-distill"][SAMPLED]["NDCG@10"].get("change")
                row["order_sensitivity"] = {"metric": f"NDCG@10 {SAMPLED} change when trained on shuffled histories",
                                            "llm_srec": a, "ablation": b,
                                            "met": a is not None and b is not None and a < b}
        if row:
            summary[backbone] = row
    teacher_shuffled = result.get("teacher_shuffled", {}).get("test")
    if teacher and teacher_shuffled:
        summary["sasrec_shuffled_training"] = compare_metrics(teacher, teacher_shuffled, ["NDCG@10", "HR@10"])
    result["summary"] = summary


if __name__ == "__main__":
    main()
