"""Data pipeline: sources -> processing -> leave-last-out splits + item catalog (`RecommendationData`), plus the
seeded negative sampling and the training collators."""

from llm_srec._lazy import lazy_exports

# imported on first use (the collators and some readers import torch), so the command line's parser stays light
__getattr__, __dir__ = lazy_exports(__name__, {
    "LLMSRecCollator": "collators",
    "SASRecCollator": "collators",
    "left_pad": "collators",
    "build_recommendation_data": "pipeline",
    "NO_TIMESTAMP": "raw",
    "RawInteractions": "raw",
    "RecommendationData": "recommendation_data",
    "DropReport": "report",
    "sample_negatives": "sampling",
    "user_rng": "sampling",
    "PAPER_SAMPLING_RATES": "amazon2023",
    "load_amazon2023": "amazon2023",
    "paper_settings": "amazon2023",
    "load_movielens": "movielens",
    "load_recbole": "recbole",
    "load_sasrec_text": "sasrec_text",
    "SyntheticConfig": "synthetic",
    "generate_synthetic": "synthetic",
    "load_tabular": "tabular",
    "expand_all_positions": "transforms",
    "shuffle_histories": "transforms",
})

__all__ = [
    "NO_TIMESTAMP",
    "PAPER_SAMPLING_RATES",
    "DropReport",
    "LLMSRecCollator",
    "RawInteractions",
    "RecommendationData",
    "SASRecCollator",
    "SyntheticConfig",
    "build_recommendation_data",
    "expand_all_positions",
    "generate_synthetic",
    "left_pad",
    "load_amazon2023",
    "load_movielens",
    "load_recbole",
    "load_sasrec_text",
    "load_tabular",
    "paper_settings",
    "sample_negatives",
    "shuffle_histories",
    "user_rng",
]
