"""Data pipeline: sources -> processing -> leave-last-out splits + item catalog (`RecommendationData`), plus the
seeded negative sampling and the training collators."""

from .collators import LLMSRecCollator, SASRecCollator, left_pad
from .pipeline import build_recommendation_data
from .raw import NO_TIMESTAMP, RawInteractions
from .recommendation_data import RecommendationData
from .report import DropReport
from .sampling import sample_negatives, user_rng
from .amazon2023 import PAPER_SAMPLING_RATES, load_amazon2023, paper_settings
from .movielens import load_movielens
from .recbole import load_recbole
from .sasrec_text import load_sasrec_text
from .synthetic import SyntheticConfig, generate_synthetic
from .tabular import load_tabular
from .transforms import expand_all_positions, shuffle_histories

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
