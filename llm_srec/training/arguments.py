"""Training arguments of the SASRec teacher and of LLM-SRec: `TrainingArguments` with the paper's defaults.

Why subclasses of `TrainingArguments` (as TRL's configs): every generic option (precision, accelerate/DeepSpeed/FSDP,
logging, checkpointing) keeps its usual name and behaviour, and only the recommendation-specific knobs are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import TrainingArguments

from llm_srec.evaluation.metrics import PROTOCOLS, protocol_labels

TRAIN_MODES = ("last", "all")


@dataclass
class RankingTrainingArguments(TrainingArguments):
    r"""
    Arguments shared by `SASRecTrainer` and `LLMSRecTrainer`: the validation ranking protocol and model selection.

    Only the parameters specific to recommendation are listed here; see `transformers.TrainingArguments` for the
    others. Defaults that differ from `TrainingArguments`: ``adam_beta2=0.98`` (the official code's Adam betas
    (0.9, 0.98); with ``weight_decay=0`` AdamW is Adam), ``lr_scheduler_type="constant"`` (the paper uses no
    schedule), ``remove_unused_columns=False`` (the collators read the split columns, which `forward` does not take),
    ``load_best_model_at_end=True`` and ``save_total_limit=2`` (the best and the latest checkpoint are kept),
    ``restore_callback_states_from_checkpoint=True`` (early stopping resumes its patience counter),
    ``dataloader_pin_memory`` only when an accelerator is present (without one, pinning only warns). ``push_to_hub``
    is refused: push the saved folder with ``llm-srec push``, which renders the model card.

    > Parameters that control the validation ranking

    num_eval_negatives (`int`, *optional*, defaults to `99`):
        Negatives per user of the sampled protocol: the target is ranked among ``1 + num_eval_negatives`` candidates
        (PAPER.md §2.6).
    eval_seed (`int`, *optional*, defaults to `0`):
        Seed of the sampled negatives (per user: ``default_rng([eval_seed, user_index])``) and of the user subset, so
        every evaluation of a run, and every run, ranks the same candidate lists.
    max_eval_users (`int` or `None`, *optional*):
        Rank a seeded random subset of at most this many validation users (the official code: 10,000). `None` ranks
        all of them.
    eval_protocols (`list[str]`, *optional*, defaults to `["sampled", "full"]`):
        Protocols computed at every evaluation: ``"sampled"`` (``sampled(1+N, seed=S)``) and/or ``"full"``
        (``full-catalog``). Metrics are logged as ``eval_<protocol label>/<metric>``, e.g.
        ``eval_sampled(1+99, seed=0)/HR@10``.

    > Parameters that control model selection

    metric_for_best_model (`str` or `None`, *optional*):
        `None` selects on the validation ``sampled(1+num_eval_negatives, seed=eval_seed)/HR@10`` (LLM-SRec, as the
        code) or ``/NDCG@10`` (SASRec). Any ``<protocol label>/<metric>`` of an evaluated protocol is accepted.
    early_stopping_patience (`int` or `None`, *optional*):
        Stop after this many evaluations without improvement of ``metric_for_best_model``; `None` never stops early.
    """

    _selection_metric: ClassVar[str] = "HR@10"

    num_eval_negatives: int = field(default=99, metadata={"help": "Negatives per user of the sampled protocol."})
    eval_seed: int = field(default=0, metadata={"help": "Seed of the sampled negatives and of the user subset."})
    max_eval_users: int | None = field(
        default=None, metadata={"help": "Rank at most this many (seeded random) validation users; None: all."}
    )
    eval_protocols: list[str] = field(
        default_factory=lambda: list(PROTOCOLS),
        metadata={"help": "Validation protocols: any of 'sampled', 'full'."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Evaluations without improvement before stopping; None: never stop early."}
    )
    adam_beta2: float = field(default=0.98, metadata={"help": "Adam beta2 (0.98, the official code)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule (paper: constant)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the split columns: the collator builds the model inputs from them."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the checkpoint with the best validation metric when training ends."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the best one is always kept)."}
    )
    restore_callback_states_from_checkpoint: bool = field(
        default=True, metadata={"help": "Resume early stopping's patience counter with the rest of the state."}
    )
    dataloader_pin_memory: bool = field(
        default_factory=torch.accelerator.is_available,
        metadata={"help": "Pin batches for faster copies to an accelerator; off without one, where it only warns."},
    )

    def __post_init__(self) -> None:
        if self.num_eval_negatives < 1:
            raise ValueError(f"num_eval_negatives must be >= 1, got {self.num_eval_negatives}")
        if self.max_eval_users is not None and self.max_eval_users < 1:
            raise ValueError(f"max_eval_users must be >= 1 or None, got {self.max_eval_users}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be >= 1 or None, got {self.early_stopping_patience}")
        if self.early_stopping_patience is not None and not self.load_best_model_at_end:
            raise ValueError("early stopping keeps the best checkpoint: it needs load_best_model_at_end=True")
        if self.push_to_hub:
            raise ValueError(
                "Trainer's push_to_hub uploads pickled training_args.bin; train, then push the saved model folder "
                "with `llm-srec push` or llm_srec.hub.push_model_folder"
            )
        labels = protocol_labels(self.eval_protocols, self.num_eval_negatives, self.eval_seed)
        if self.metric_for_best_model is None:
            first = labels.get("sampled", next(iter(labels.values())))
            self.metric_for_best_model = f"{first}/{self._selection_metric}"
        selected = self.metric_for_best_model.removeprefix("eval_")
        if "/" not in selected or selected.rsplit("/", 1)[0] not in labels.values():
            raise ValueError(
                f"metric_for_best_model={self.metric_for_best_model!r} is not '<protocol>/<metric>' of an evaluated "
                f"protocol; evaluated protocols: {sorted(labels.values())}"
            )
        super().__post_init__()


@dataclass
class SASRecTrainingArguments(RankingTrainingArguments):
    r"""
    Arguments of `SASRecTrainer`, the teacher's pre-training, with the official code's values (PAPER.md §4.1):
    Adam lr 1e-3 with betas (0.9, 0.98), batch 128, 200 epochs, BCE with one sampled negative per position.
    Unlike the code (last-epoch checkpoint), the checkpoint kept is the best on validation sampled NDCG@10, evaluated
    after every epoch.

    > Parameters that control the training

    learning_rate (`float`, *optional*, defaults to `1e-3`), per_device_train_batch_size (`int`, *optional*,
    defaults to `128`), num_train_epochs (`float`, *optional*, defaults to `200`): as in the code.
    per_device_eval_batch_size (`int`, *optional*, defaults to `128`): users per evaluation batch.
    eval_strategy, save_strategy, logging_strategy (*optional*, default to `"epoch"`): validate, checkpoint and log
        once per epoch.

    See `RankingTrainingArguments` for the evaluation and selection parameters.
    """

    _selection_metric: ClassVar[str] = "NDCG@10"

    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate (1e-3, the code)."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Training batch size (128)."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Users per evaluation batch."})
    num_train_epochs: float = field(default=200.0, metadata={"help": "Training epochs (200, the code)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to validate (every epoch)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint (every epoch)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log the loss (every epoch)."})


@dataclass
class LLMSRecTrainingArguments(RankingTrainingArguments):
    r"""
    Arguments of `LLMSRecTrainer`, with the paper's values (PAPER.md §2.5, §3.5): Adam lr 1e-4 with betas
    (0.9, 0.98), batch 20, at most 10 epochs, validation every 10% of an epoch on sampled HR@10 (1 + 99 candidates),
    early stopping (paper: patience 10; code: 5) and at most 10,000 validation users (the code).

    > Parameters that control the training examples

    train_mode (`str`, *optional*, defaults to `"last"`):
        ``"last"``: one example per user, the last training item (the paper, "for training efficiency");
        ``"all"``: one example per position of each training sequence (auto-regressive, App. E.3).
    num_train_negatives (`int`, *optional*, defaults to `3`):
        Random negatives per training example (the retrieval loss ranks the target among ``1 + N``; 3, the code: 4
        candidates).
    num_teacher_negatives (`int`, *optional*, defaults to `0`):
        Hard negatives per training example: the frozen teacher's top-scored items the user has not interacted with,
        added after the random ones (0, the paper: none).
    train_sampling_strategy (`str`, *optional*, defaults to `"random"`):
        As in `TrainingArguments`. ``"group_by_length"`` batches training rows of similar user-prompt token length
        (``length_column_name`` when the train dataset has that column, else measured once with the collator's
        processor), so a batch pads less; its shuffle is seeded by ``data_seed`` (or ``seed``) and the epoch, so a
        resumed run replays the same batches. It changes which rows share a batch, hence the training result: off by
        default.

    > Parameters that control validation and the schedule

    eval_every_epoch_fraction (`float` or `None`, *optional*, defaults to `0.1`):
        Validate and checkpoint every this fraction of an epoch (the paper: 10%); ``eval_steps`` and ``save_steps``
        are derived from the epoch length when training starts. `None` uses ``eval_steps``/``save_steps`` as given.
    lr_decay_per_evaluation (`float` or `None`, *optional*):
        Multiply the learning rate by this factor after every validation, as the official code does (0.95). Off by
        default because the paper describes a constant learning rate; it replaces ``lr_scheduler_type``.
    early_stopping_patience (`int` or `None`, *optional*, defaults to `10`):
        The paper's patience (the code uses 5).
    max_eval_users (`int` or `None`, *optional*, defaults to `10000`):
        The code's validation subsample.

    See `RankingTrainingArguments` for the other evaluation and selection parameters.
    """

    learning_rate: float = field(default=1e-4, metadata={"help": "Adam learning rate (1e-4, the paper)."})
    per_device_train_batch_size: int = field(default=20, metadata={"help": "Training batch size (20, the paper)."})
    per_device_eval_batch_size: int = field(default=20, metadata={"help": "Users/items per evaluation batch."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Maximum training epochs (10, the paper)."})
    eval_strategy: str = field(default="steps", metadata={"help": "Validate every eval_steps optimisation steps."})
    save_strategy: str = field(default="steps", metadata={"help": "Checkpoint at every validation."})
    logging_steps: float = field(default=10, metadata={"help": "Log the losses every this many steps."})
    early_stopping_patience: int | None = field(
        default=10, metadata={"help": "Validations without improvement before stopping (paper 10, code 5)."}
    )
    max_eval_users: int | None = field(
        default=10_000, metadata={"help": "Rank at most this many (seeded random) validation users (code: 10,000)."}
    )
    train_mode: str = field(default="last", metadata={"help": "'last' (one example per user) or 'all' positions."})
    num_train_negatives: int = field(
        default=3, metadata={"help": "Random negatives per training example (3, the code: 1 + 3 candidates)."}
    )
    num_teacher_negatives: int = field(
        default=0, metadata={"help": "Teacher-ranked hard negatives per training example (0: none, the paper)."}
    )
    train_sampling_strategy: str = field(
        default="random",
        metadata={
            "help": "Training sampler: 'random', 'sequential', 'group_by_length' (batches of similar user-prompt "
            "length: less padding, but other batches than 'random', so other results) or 'batch_rebalance'.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    eval_every_epoch_fraction: float | None = field(
        default=0.1, metadata={"help": "Validate every this fraction of an epoch (0.1); None: use eval_steps."}
    )
    lr_decay_per_evaluation: float | None = field(
        default=None, metadata={"help": "Multiply the lr by this after every validation (code: 0.95); None: off."}
    )

    def __post_init__(self) -> None:
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}")
        if self.num_teacher_negatives < 0:
            raise ValueError(f"num_teacher_negatives must be >= 0, got {self.num_teacher_negatives}")
        if self.num_train_negatives < 1:
            raise ValueError(f"num_train_negatives must be >= 1, got {self.num_train_negatives}")
        if self.eval_every_epoch_fraction is not None and not 0 < self.eval_every_epoch_fraction <= 1:
            raise ValueError(f"eval_every_epoch_fraction must be in (0, 1] or None, got {self.eval_every_epoch_fraction}")
        if self.lr_decay_per_evaluation is not None and not 0 < self.lr_decay_per_evaluation <= 1:
            raise ValueError(f"lr_decay_per_evaluation must be in (0, 1] or None, got {self.lr_decay_per_evaluation}")
        super().__post_init__()
        steps_based = str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "steps"
        if self.eval_every_epoch_fraction is not None and not steps_based:
            raise ValueError(
                "eval_every_epoch_fraction needs eval_strategy='steps'; set eval_every_epoch_fraction=None to validate "
                f"with eval_strategy={self.eval_strategy!r}"
            )
        if self.lr_decay_per_evaluation is not None and not steps_based:
            raise ValueError("lr_decay_per_evaluation decays per validation step: it needs eval_strategy='steps'")


__all__ = ["LLMSRecTrainingArguments", "RankingTrainingArguments", "SASRecTrainingArguments", "TRAIN_MODES"]
