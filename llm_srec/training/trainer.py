"""`LLMSRecTrainer` and the `RankingTrainer` base it shares with `SASRecTrainer`.

Why a thin `Trainer` subclass (as TRL / sentence-transformers): the training loop, mixed precision, accelerate,
DeepSpeed/FSDP, logging and checkpoint rotation stay transformers', and only the recommendation parts are added:

- `evaluate` ranks the validation users with `RankingEvaluator` (item index once per evaluation, split across
  processes) instead of running a loss-only evaluation loop; model selection and early stopping read its metrics;
- checkpoints and the final model are what the model's own `save_pretrained` writes (LLM-SRec: no backbone), plus
  `training_args.json` and a model card; optimizer, scheduler, grad-scaler and RNG state are written as safetensors
  + JSON (`checkpointing`), so no pickle file is written or loaded (DeepSpeed and FSDP keep their own formats);
- the collator's negatives follow the epoch (`CollatorEpochCallback`);
- ``train_sampling_strategy="group_by_length"`` groups training rows by the token length of their user prompt (the
  rows are raw split rows, tokenised by the collator, so `Trainer` cannot measure them), with an epoch-seeded shuffle
  so a resumed run replays the same batches.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from datasets import Dataset
from torch.optim.lr_scheduler import LambdaLR
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import speed_metrics

from llm_srec.data.collators import LLMSRecCollator
from llm_srec.data.transforms import expand_all_positions
from llm_srec.evaluation.ranking import NestedMetrics, RankingEvaluator, flatten_metrics
from llm_srec.hub import write_model_card
from llm_srec.modeling import LLMSRecForRecommendation, LLMSRecProcessor
from llm_srec.modeling.losses_llm_srec import LOSS_TERMS
from llm_srec.modeling.saving_llm_srec import staged_model_folder

from . import checkpointing
from .arguments import LLMSRecTrainingArguments, RankingTrainingArguments
from .callbacks import (
    CollatorEpochCallback,
    NoNearDuplicateFinalEvaluationCallback,
    QuietProgressCallback,
    TrainingLogCallback,
)
from .sanity import untrained_run_warnings

logger = logging.getLogger(__name__)

LENGTH_STRATEGIES = ("group_by_length", "batch_rebalance")


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose shuffle is drawn from ``seed + epoch`` (as accelerate's `SeedableRandomSampler`)
    rather than the global torch RNG: every process draws the same order, and a run resumed mid-epoch replays the
    uninterrupted run's batches. `Trainer` calls `set_epoch` at the start of every epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class RankingTrainer(Trainer):
    """`Trainer` whose evaluation is a ranking evaluation and whose saved state holds no pickle.

    Subclasses set ``num_items`` and build their collator; ``model_card_kwargs`` (e.g. ``data_statistics``,
    ``backbone_random_init``) go to `llm_srec.hub.write_model_card` for every checkpoint and the final model.
    """

    args: RankingTrainingArguments

    def __init__(
        self,
        model: torch.nn.Module,
        args: RankingTrainingArguments,
        num_items: int,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        data_collator: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        model_card_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, RankingTrainingArguments):
            raise ValueError(f"args must be RankingTrainingArguments (or a subclass), got {type(args).__name__}")
        if eval_dataset is not None and not isinstance(eval_dataset, Dataset):
            raise ValueError("eval_dataset must be one datasets.Dataset split (e.g. data.splits['validation'])")
        callbacks = [*(callbacks or []), NoNearDuplicateFinalEvaluationCallback()]
        if hasattr(data_collator, "set_epoch"):
            callbacks.append(CollatorEpochCallback(data_collator))
        if args.early_stopping_patience is not None:
            callbacks.append(EarlyStoppingCallback(args.early_stopping_patience))
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            callbacks=callbacks,
            **kwargs,
        )
        self._use_readable_logs()
        self.num_items = int(num_items)
        self.model_card_kwargs = dict(model_card_kwargs or {})
        self._evaluator = self._make_evaluator(eval_dataset) if eval_dataset is not None else None
        self.last_ranking_metrics: NestedMetrics | None = None
        self._num_candidates: int | None = None  # candidates per training target, set by a subclass's compute_loss

    def _use_readable_logs(self) -> None:
        """Swap `Trainer`'s raw log-dict printers for `TrainingLogCallback`'s one-line summaries."""
        if self.pop_callback(PrinterCallback) is not None or self.pop_callback(ProgressCallback) is not None:
            if not self.args.disable_tqdm:
                self.add_callback(QuietProgressCallback)
            self.add_callback(TrainingLogCallback)

    # ------------------------------------------------------------------------------------------- evaluation
    def _make_evaluator(self, dataset: Dataset) -> RankingEvaluator:
        return RankingEvaluator(
            dataset,
            self.num_items,
            protocols=self.args.eval_protocols,
            num_negatives=self.args.num_eval_negatives,
            seed=self.args.eval_seed,
            max_users=self.args.max_eval_users,
            batch_size=self.args.per_device_eval_batch_size,
        )

    @contextlib.contextmanager
    def _full_parameters(self) -> Iterator[None]:
        """FSDP (v1) shards parameters and the evaluation calls the model's submodules directly, so the full
        parameters are gathered meanwhile (before training wraps the model there is nothing to gather)."""
        if self.is_fsdp_enabled:
            from torch.distributed.fsdp import FullyShardedDataParallel

            if isinstance(self.model, FullyShardedDataParallel):
                with FullyShardedDataParallel.summon_full_params(self.model, writeback=False):
                    yield
                return
        yield

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Rank the users of ``eval_dataset`` (default: the validation split given at init) under the configured
        protocols; returns flat ``{prefix}_{protocol label}/{metric}`` metrics and keeps the nested form in
        ``last_ranking_metrics``. ``ignore_keys`` is accepted for `Trainer` compatibility and unused."""
        if eval_dataset is None:
            if self._evaluator is None:
                raise ValueError("no eval_dataset: pass one to evaluate() or to the trainer")
            evaluator = self._evaluator
        elif isinstance(eval_dataset, Dataset):
            evaluator = self._make_evaluator(eval_dataset)
        else:
            raise ValueError("eval_dataset must be one datasets.Dataset split")
        self._memory_tracker.start()
        start_time = time.time()
        with self._full_parameters(), self.accelerator.autocast():
            results = evaluator.evaluate(
                self.accelerator.unwrap_model(self.model),
                show_progress=not self.args.disable_tqdm,
                description=f"Ranking ({metric_key_prefix})",
            )
        self.last_ranking_metrics = results
        metrics = flatten_metrics(results, metric_key_prefix)
        metrics.update(speed_metrics(metric_key_prefix, start_time, num_samples=evaluator.num_users))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    # ----------------------------------------------------------------------------------- saving the model
    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The model's `save_pretrained` output, `training_args.json` and the model card (no `training_args.bin`),
        written together into a staging folder and renamed into place (`staged_model_folder`): the final model
        folder is complete or untouched. In a checkpoint, `Trainer` then adds the optimizer, scheduler and RNG
        state and, last, trainer_state.json, the mark of a complete checkpoint (`checkpointing.checkpoint_problem`).
        """
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        with staged_model_folder(output_dir) as staging:
            model.save_pretrained(staging, state_dict=state_dict, is_main_process=True)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(staging)
            write_model_card(staging, training_args=self.args.to_dict(), **self.model_card_kwargs)

    # ----------------------------------------------------------------------------------------- resuming
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`; ``resume_from_checkpoint=True`` resumes from the newest *complete* checkpoint in
        ``args.output_dir`` (`checkpointing.find_resumable_checkpoint`), skipping ones a killed save left half
        written, where `Trainer` would pick the newest folder and fail on it; the main process says which one."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint, step = checkpointing.find_resumable_checkpoint(self.args.output_dir)
            if self.is_world_process_zero():
                print(f"Resuming from {resume_from_checkpoint} (step {step})", flush=True)
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if self.is_world_process_zero():
            for warning in self.untrained_run_warnings():
                logger.warning("This run did not learn: %s.", warning)
        return output

    def untrained_run_warnings(self) -> list[str]:
        """`llm_srec.training.sanity.untrained_run_warnings` of the finished run (empty when it learnt)."""
        retrieval = [entry["retrieval_loss"] for entry in self.state.log_history if "retrieval_loss" in entry]
        return untrained_run_warnings(
            (self.args.metric_for_best_model or "").removeprefix("eval_"), self.state.best_metric, self.num_items,
            retrieval[-1] if retrieval else None, self._num_candidates,
        )

    # --------------------------------------------------------------- trainer state without pickle files
    def _engine_owns_state(self) -> bool:
        """DeepSpeed and FSDP save and load their (sharded) optimizer state in their own format."""
        return self.is_deepspeed_enabled or self.is_fsdp_enabled

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self._engine_owns_state():
            super()._save_optimizer_and_scheduler(output_dir)
            return
        if self.args.should_save:
            checkpointing.save_state(self.optimizer.state_dict(), output_dir, checkpointing.OPTIMIZER_STATE)
            checkpointing.save_state(self.lr_scheduler.state_dict(), output_dir, checkpointing.SCHEDULER_STATE)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        if self._engine_owns_state():
            super()._load_optimizer_and_scheduler(checkpoint)
            return
        names = (checkpointing.OPTIMIZER_STATE, checkpointing.SCHEDULER_STATE)
        if not all(checkpointing.has_state(checkpoint, name) for name in names):
            logger.warning("%s holds no optimizer/scheduler state: they start afresh.", checkpoint)
            return
        self.optimizer.load_state_dict(checkpointing.load_state(checkpoint, checkpointing.OPTIMIZER_STATE))
        self.lr_scheduler.load_state_dict(checkpointing.load_state(checkpoint, checkpointing.SCHEDULER_STATE))

    def _grad_scaler(self) -> Any:
        return getattr(self.accelerator, "scaler", None)

    def _save_scaler(self, output_dir: str) -> None:
        scaler = self._grad_scaler()
        if scaler is not None and self.args.should_save:
            checkpointing.save_state(scaler.state_dict(), output_dir, checkpointing.SCALER_STATE)

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = self._grad_scaler()
        if checkpoint is not None and scaler is not None and checkpointing.has_state(checkpoint, checkpointing.SCALER_STATE):
            scaler.load_state_dict(checkpointing.load_state(checkpoint, checkpointing.SCALER_STATE))

    def _save_rng_state(self, output_dir: str) -> None:
        if self.args.world_size > 1:  # every process writes its RNG state: after the main one renamed the folder in
            self.accelerator.wait_for_everyone()
        name = checkpointing.rng_state_name(self.args.process_index, self.args.world_size)
        checkpointing.save_state(checkpointing.capture_rng_state(), output_dir, name)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        name = checkpointing.rng_state_name(self.args.process_index, self.args.world_size)
        if not checkpointing.has_state(checkpoint, name):
            logger.info("%s holds no RNG state for this process: resuming is not bit-reproducible.", checkpoint)
            return
        checkpointing.restore_rng_state(checkpointing.load_state(checkpoint, name))


class LLMSRecTrainer(RankingTrainer):
    """Trains the LLM-SRec heads and output vectors (backbone and teacher frozen) with the paper's recipe.

    Args:
        model: an `LLMSRecForRecommendation` with its processor attached (or pass ``processing_class``).
        args: `LLMSRecTrainingArguments` (paper defaults when None, writing to ``llm_srec_output``).
        train_dataset: the train split (``data.splits["train"]``); with ``train_mode="all"`` it is expanded to
            every position here.
        eval_dataset: the validation split, ranked at every evaluation (model selection uses validation only).
        data_collator: defaults to `LLMSRecCollator` with the model's processor, the teacher's window, the
            configured negatives and ``args.seed``.
        processing_class: an `LLMSRecProcessor` to attach to the model (it is saved with the model).
        model_card_kwargs: extra `write_model_card` inputs for every saved folder.
        **kwargs: any other `Trainer` argument (``callbacks``, ``optimizers`` ...).
    """

    args: LLMSRecTrainingArguments

    def __init__(
        self,
        model: LLMSRecForRecommendation,
        args: LLMSRecTrainingArguments | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        data_collator: Any = None,
        processing_class: LLMSRecProcessor | None = None,
        model_card_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, LLMSRecForRecommendation):
            raise ValueError(f"LLMSRecTrainer trains an LLMSRecForRecommendation, got {type(model).__name__}")
        args = args if args is not None else LLMSRecTrainingArguments(output_dir="llm_srec_output")
        if not isinstance(args, LLMSRecTrainingArguments):
            raise ValueError(f"args must be LLMSRecTrainingArguments, got {type(args).__name__}")
        if processing_class is not None:
            model.processor = processing_class
        processor = model.processor
        if processor is None or processor.item_catalog is None:
            raise ValueError("the model needs a processor with an item catalog (pass processing_class=...)")
        if train_dataset is not None and data_collator is None:
            known_items = None
            if args.train_mode == "all":
                known_items = _training_sequences(train_dataset)
                train_dataset = expand_all_positions(train_dataset, max_history=model.sasrec.config.max_position_embeddings)
            data_collator = LLMSRecCollator(
                processor,
                sasrec_maxlen=model.sasrec.config.max_position_embeddings,
                num_negatives=args.num_train_negatives,
                teacher=copy.deepcopy(model.sasrec).cpu().eval() if args.num_teacher_negatives else None,
                num_teacher_negatives=args.num_teacher_negatives,
                seed=args.seed,
                known_items=known_items,
            )
        # The processor is saved by the model's save_pretrained; Trainer must not align or re-save it.
        super().__init__(
            model,
            args,
            num_items=len(processor.item_catalog),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            model_card_kwargs=model_card_kwargs,
            **kwargs,
        )
        if args.eval_every_epoch_fraction is not None and train_dataset is not None:
            args.eval_steps = args.save_steps = self._steps_per_fraction(len(train_dataset))
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_count = 0
        self._in_batch_negatives = bool(model.config.in_batch_negatives)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        """`Trainer`'s sampler; the length-based strategies get each row's user-prompt token length (the
        ``length_column_name`` column when the dataset has one, else the collator's ``prompt_lengths``)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        strategy = self.args.train_sampling_strategy
        if strategy not in LENGTH_STRATEGIES or not isinstance(dataset, Dataset):
            return super()._get_train_sampler(train_dataset)
        name = self.args.length_column_name
        if name in dataset.column_names:
            lengths = [int(length) for length in dataset[name]]
        else:
            prompt_lengths = getattr(self.data_collator, "prompt_lengths", None)
            if prompt_lengths is None:
                raise ValueError(
                    f"train_sampling_strategy={strategy!r} needs each training row's length: add a {name!r} column to "
                    "the train dataset, or use a collator with prompt_lengths(rows) such as LLMSRecCollator"
                )
            start = time.perf_counter()
            lengths = prompt_lengths(dataset)
            logger.info("Measured %d training prompts in %.1f s", len(lengths), time.perf_counter() - start)
        if strategy == "batch_rebalance":
            return super()._get_train_sampler(dataset.add_column(name, lengths))
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths, seed
        )

    def _steps_per_fraction(self, num_examples: int) -> int:
        """Optimisation steps in ``eval_every_epoch_fraction`` of an epoch, counted as `Trainer` counts an epoch."""
        args = self.args
        per_step = args.per_device_train_batch_size * args.world_size
        batches = num_examples // per_step if args.dataloader_drop_last else -(-num_examples // per_step)
        updates = max(-(-batches // args.gradient_accumulation_steps), 1)
        return max(int(updates * args.eval_every_epoch_fraction), 1)

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """With ``lr_decay_per_evaluation``: lr x decay^(validations so far), the official code's schedule."""
        decay = self.args.lr_decay_per_evaluation
        if decay is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        every = int(self.state.eval_steps)
        self.lr_scheduler = LambdaLR(optimizer or self.optimizer, lambda step: decay ** (step // every))
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The model's own loss (`Trainer.compute_loss`); its three terms are also kept for the training logs."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            # the retrieval loss's chance level is ln of the candidates each target ranks against
            candidates = inputs["candidate_item_ids"]
            self._num_candidates = candidates.numel() if self._in_batch_negatives else candidates.shape[-1]
            for name in LOSS_TERMS:
                value = getattr(outputs, name, None)
                if value is not None:
                    self._loss_sums[name] = self._loss_sums.get(name, 0) + value.detach().float()
            self._loss_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean retrieval / distillation / uniformity losses (over processes) to each training log."""
        if "loss" in logs and self._loss_count:
            names = sorted(self._loss_sums)
            means = torch.stack([self._loss_sums[name] for name in names]) / self._loss_count
            means = self.accelerator.gather(means.to(self.args.device)).view(-1, len(names)).mean(0)
            logs.update({name: round(float(value), 6) for name, value in zip(names, means)})
            self._loss_sums, self._loss_count = {}, 0
        super().log(logs, start_time)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """A checkpoint never holds backbone weights: only keys the model saves may be missing, and then it is an
        error (Trainer would only warn)."""
        expected = set(self.accelerator.unwrap_model(self.model).checkpoint_state_dict())
        missing = sorted(key for key in load_result.missing_keys if key in expected)
        if missing or load_result.unexpected_keys:
            raise ValueError(
                f"The checkpoint does not match this model: missing {missing[:10]}, "
                f"unexpected {sorted(load_result.unexpected_keys)[:10]}"
            )


def _training_sequences(train: Dataset) -> list[list[int]]:
    """Each user's training sequence (history + target) by user_index, to keep later items out of the negatives of
    all-positions examples."""
    columns = train.select_columns(["user_index", "history", "target"])[:]
    sequences: list[list[int]] = [[] for _ in range(max(columns["user_index"]) + 1)]
    for user, history, target in zip(columns["user_index"], columns["history"], columns["target"]):
        sequences[user] = [*history, target]
    return sequences


__all__ = ["LOSS_TERMS", "EpochSeededLengthGroupedSampler", "LLMSRecTrainer", "RankingTrainer"]
