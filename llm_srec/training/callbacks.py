"""Trainer callbacks of the recommendation trainers."""

from __future__ import annotations

import math
from typing import Any, Protocol

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

# Loss keys of the training log, in print order, with their short names.
_LOSS_NAMES = {
    "retrieval_loss": "retrieval",
    "distillation_loss": "distill",
    "uniformity_loss": "uniform",
    "score_distillation_loss": "score-distill",
    "item_distillation_loss": "item-distill",
}
_HEADLINE_METRICS = ("NDCG@10", "HR@10")


class EpochSeeded(Protocol):
    def set_epoch(self, epoch: int) -> None: ...


class CollatorEpochCallback(TrainerCallback):
    """Moves a collator whose negatives are keyed by epoch (`SASRecCollator`, `LLMSRecCollator`) to the epoch that
    starts, so negatives change every epoch and a run resumed mid-epoch draws the same ones as an uninterrupted run.

    ``state.epoch`` is the fractional epoch reached so far (it ends every epoch at exactly ``epoch + 1``), so its
    floor is the index of the epoch that is starting, also when `Trainer` resumes inside one.
    """

    def __init__(self, collator: EpochSeeded) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.collator.set_epoch(math.floor(state.epoch or 0))


class NoNearDuplicateFinalEvaluationCallback(TrainerCallback):
    """Drops `Trainer`'s end-of-training validation when a scheduled one ran less than half an interval earlier.

    Why: with validation every 6 steps of a 61-step run, `Trainer` validates at step 60 and again at 61; the two
    rank nearly the same model, and on a real backbone one validation can cost as much as the whole run's training
    steps. Model selection then picks among the scheduled validations; the final state is still saved.
    """

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        eval_steps = state.eval_steps or 0
        if eval_steps < 1 or state.global_step < state.max_steps or not control.should_evaluate:
            return
        since_last = state.global_step % int(eval_steps)
        if 0 < since_last < eval_steps / 2 and state.global_step > eval_steps:
            control.should_evaluate = False


class QuietProgressCallback(ProgressCallback):
    """`ProgressCallback` without its raw log dicts: `TrainingLogCallback` prints the readable lines instead."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        return None


def format_log_line(logs: dict[str, Any], state: TrainerState) -> str | None:
    """One readable line for a training or evaluation log, or None for logs worth no line (e.g. speed only).

    Training: ``step 120/4220 (epoch 0.28)  loss 3.312 = retrieval 2.390 + distill 0.014 ...  lr 1e-04``.
    Evaluation: ``eval step 120  sampled(1+99, seed=0) NDCG@10 0.3132 HR@10 0.4940 | full-catalog ...  (1000 users,
    1.2 s)``,
    the headline metrics of every evaluated protocol, named with their protocol.
    """
    step = f"step {state.global_step}/{state.max_steps}" if state.max_steps else f"step {state.global_step}"
    epoch = f" (epoch {state.epoch:.2f})" if state.epoch is not None else ""
    if "loss" in logs:
        terms = " + ".join(f"{short} {logs[key]:.4g}" for key, short in _LOSS_NAMES.items() if key in logs)
        line = f"{step}{epoch}  loss {logs['loss']:.4g}" + (f" = {terms}" if terms else "")
        if "learning_rate" in logs:
            line += f"  lr {logs['learning_rate']:.2g}"
        return line
    protocols: dict[str, list[str]] = {}
    users = None
    for key, value in logs.items():
        if key.startswith("eval_") and "/" in key:
            protocol, metric = key[len("eval_"):].rsplit("/", 1)
            if metric in _HEADLINE_METRICS:
                protocols.setdefault(protocol, []).append(f"{metric} {value:.4f}")
            elif metric == "num_users":
                users = int(value)
    if protocols:
        extra = [f"{users} users"] if users is not None else []
        extra += [f"{logs['eval_runtime']:.1f} s"] if "eval_runtime" in logs else []
        suffix = f"  ({', '.join(extra)})" if extra else ""
        return f"eval {step}{epoch}  " + " | ".join(f"{p} {' '.join(m)}" for p, m in protocols.items()) + suffix
    if "train_runtime" in logs:
        return f"training done: {state.global_step} steps in {logs['train_runtime']:.0f} s"
    return None


class TrainingLogCallback(TrainerCallback):
    """Prints one line per logging step (the loss and its terms) and per evaluation (protocol-labelled headline
    metrics), in place of `Trainer`'s raw log dicts; written through tqdm so progress bars stay intact."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line = format_log_line(logs, state)
            if line is not None:
                tqdm.write(line)


__all__ = ["CollatorEpochCallback", "QuietProgressCallback", "TrainingLogCallback", "format_log_line"]
