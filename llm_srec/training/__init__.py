"""Training: `SASRecTrainer` (teacher pre-training) and `LLMSRecTrainer` on the transformers `Trainer`, their
arguments with the paper's defaults, and the high-level pipeline functions used by the CLI and the notebooks."""

from .arguments import LLMSRecTrainingArguments, RankingTrainingArguments, SASRecTrainingArguments
from .callbacks import CollatorEpochCallback
from .pipeline import build_llm_srec, evaluate_model, load_data, load_model, pretrain_sasrec, train_llm_srec
from .sasrec_trainer import SASRecTrainer
from .trainer import LLMSRecTrainer, RankingTrainer

__all__ = [
    "CollatorEpochCallback",
    "LLMSRecTrainer",
    "LLMSRecTrainingArguments",
    "RankingTrainer",
    "RankingTrainingArguments",
    "SASRecTrainer",
    "SASRecTrainingArguments",
    "build_llm_srec",
    "evaluate_model",
    "load_data",
    "load_model",
    "pretrain_sasrec",
    "train_llm_srec",
]
