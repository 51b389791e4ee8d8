"""`SASRecTrainer`: pre-trains the SASRec teacher with `Trainer`, selected on the same ranking protocol as LLM-SRec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datasets import Dataset

from llm_srec.data.collators import SASRecCollator
from llm_srec.modeling import SASRecModel

from .arguments import SASRecTrainingArguments
from .trainer import RankingTrainer


class SASRecTrainer(RankingTrainer):
    """BCE with one seeded negative per position (`SASRecCollator`), validated with `RankingEvaluator` (PAPER.md §4).

    Args:
        model: the `SASRecModel` to train (``config.loss_type`` picks BCE, the paper, or full-softmax CE).
        args: `SASRecTrainingArguments` (the code's defaults when None, writing to ``sasrec_output``).
        train_dataset: the train split; each row's training sequence is ``history + [target]``.
        eval_dataset: the validation split.
        data_collator: defaults to `SASRecCollator(num_items, maxlen, seed=args.seed)`.
        model_card_kwargs: extra `write_model_card` inputs for every saved folder.
        **kwargs: any other `Trainer` argument.
    """

    args: SASRecTrainingArguments

    def __init__(
        self,
        model: SASRecModel,
        args: SASRecTrainingArguments | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        data_collator: Any = None,
        model_card_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, SASRecModel):
            raise ValueError(f"SASRecTrainer trains a SASRecModel, got {type(model).__name__}")
        args = args if args is not None else SASRecTrainingArguments(output_dir="sasrec_output")
        if not isinstance(args, SASRecTrainingArguments):
            raise ValueError(f"args must be SASRecTrainingArguments, got {type(args).__name__}")
        if data_collator is None:
            data_collator = SASRecCollator(
                model.config.num_items, maxlen=model.config.max_position_embeddings, seed=args.seed
            )
        super().__init__(
            model,
            args,
            num_items=model.config.num_items,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            model_card_kwargs=model_card_kwargs,
            **kwargs,
        )


__all__ = ["SASRecTrainer"]
