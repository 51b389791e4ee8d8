"""Training: `SASRecTrainer` (teacher pre-training) and `LLMSRecTrainer` on the transformers `Trainer`, their
arguments with the paper's defaults, and the high-level pipeline functions used by the CLI and the notebooks."""

from llm_srec._lazy import lazy_exports

# imported on first use, so that the command line's parser (which reads the recipe names) loads no torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "LLMSRecTrainingArguments": "arguments",
    "RankingTrainingArguments": "arguments",
    "SASRecTrainingArguments": "arguments",
    "CollatorEpochCallback": "callbacks",
    "build_llm_srec": "pipeline",
    "evaluate_model": "pipeline",
    "load_data": "pipeline",
    "load_model": "pipeline",
    "pretrain_sasrec": "pipeline",
    "train_llm_srec": "pipeline",
    "SASRecTrainer": "sasrec_trainer",
    "LLMSRecTrainer": "trainer",
    "RankingTrainer": "trainer",
})

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
