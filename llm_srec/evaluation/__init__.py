"""Evaluation: ranking metrics with pessimistic ties (`metrics`) and the ranking evaluation of LLM-SRec and SASRec
under the labelled ``sampled(1+N, seed=S)`` and ``full-catalog`` protocols (`ranking`)."""

from .metrics import (
    DEFAULT_KS,
    FULL_CATALOG,
    PROTOCOLS,
    RankingMetrics,
    hit_rate_at_k,
    ndcg_at_k,
    protocol_labels,
    random_ranker_expectation,
    sampled_protocol,
    target_ranks,
)
from .ranking import (
    LLMSRecEncoder,
    RankingEncoder,
    RankingEvaluator,
    SASRecEncoder,
    evaluate_ranking,
    flatten_metrics,
    format_metrics_table,
    nest_metrics,
    ranking_encoder,
)

__all__ = [
    "DEFAULT_KS",
    "FULL_CATALOG",
    "PROTOCOLS",
    "LLMSRecEncoder",
    "RankingEncoder",
    "RankingEvaluator",
    "RankingMetrics",
    "SASRecEncoder",
    "evaluate_ranking",
    "flatten_metrics",
    "format_metrics_table",
    "hit_rate_at_k",
    "nest_metrics",
    "ndcg_at_k",
    "protocol_labels",
    "random_ranker_expectation",
    "ranking_encoder",
    "sampled_protocol",
    "target_ranks",
]
