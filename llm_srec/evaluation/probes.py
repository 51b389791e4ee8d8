"""Sequence-understanding probes (PAPER.md §2.3, §7): does a model use the ORDER of a user's history?

Why: the paper's diagnosis is that most LLM recommenders ignore order. It is measured by destroying order and looking
at what changes, and every probe here does exactly that with the package's own data transform and ranking evaluation:

- shuffled training: the model trained on once-shuffled training histories, ranked on the original test histories;
- shuffled inference: a model trained on original histories, ranked on shuffled test histories;
- representation similarity: cosine between a user's representation of the original and of the shuffled history
  (LLM-SRec: the backbone state h_U and the head output f_user(h_U); SASRec: O_u), averaged over users;
- breakdowns: the same rankings split into Transition / Non-Transition users (t-score, footnote 3) and warm / cold
  target items (top / bottom 35% by training interactions).

Shuffling is `llm_srec.data.shuffle_histories` (seeded per user): the history ids move, the timestamps and the target
stay, so in an LLM-SRec prompt only titles and item embeddings move while "Item No." and times keep their slots, and
SASRec sees the permuted id sequence. Candidates are drawn per user from the (unchanged) set of known items, so the
original and the shuffled rankings use identical candidate lists. `MeanEmbeddingControl` is an order-blind model that
calibrates the probes: it must show a 0% change and a similarity of 1.

The result of `run_probes` is the ``probe.json`` dict of a model folder (DESIGN.md), read by the model card.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from llm_srec.data import RecommendationData, shuffle_histories
from llm_srec.modeling import LLMSRecForRecommendation, SASRecModel
from llm_srec.training.recipes import ABLATION_LABELS, ablation_name

from .metrics import PROTOCOLS
from .ranking import NestedMetrics, RankingEncoder, RankingEvaluator, ranking_encoder

logger = logging.getLogger(__name__)

ProbeModel = Union[LLMSRecForRecommendation, SASRecModel, RankingEncoder]
Comparison = dict[str, dict[str, dict[str, float]]]  # {protocol: {metric: {"original", "shuffled", "change"}}}

LLM_SREC_LABEL = "LLM-SRec"
SASREC_LABEL = "SASRec"
CONTROL_LABEL = "Order-blind control"

# Representation names, as the paper writes them (Table 5 asks which tensor is "the" user representation).
H_U, F_USER, O_U, MEAN_EMBEDDING = "h_U", "f_user(h_U)", "O_u", "mean item embedding"

TRANSITION, NON_TRANSITION = "Transition set", "Non-transition set"
WARM, COLD = "Warm targets", "Cold targets"
TRANSITION_FRACTION = 0.5  # footnote 3: top 50% of users by t-score
WARM_COLD_FRACTION = 0.35  # §4.1.3 (after A-LLMRec): top / bottom 35% of items by interaction count
BREAKDOWN_METRICS = ("NDCG@10", "HR@10")

# Section keys of probe.json (each becomes a table of the model card).
SETUP = "setup"
SHUFFLED_TRAINING = "shuffled_training"
SHUFFLED_INFERENCE = "shuffled_inference"
REPRESENTATION_SIMILARITY = "representation_similarity"
TRANSITION_BREAKDOWN = "transition_breakdown"
WARM_COLD_BREAKDOWN = "warm_cold_breakdown"
BREAKDOWNS = {TRANSITION_BREAKDOWN: (TRANSITION, NON_TRANSITION), WARM_COLD_BREAKDOWN: (WARM, COLD)}

def model_label(model: ProbeModel) -> str:
    """Row label of a model in the probe tables: "LLM-SRec" (with its ablation), "SASRec", or the class name."""
    if isinstance(model, LLMSRecForRecommendation):
        ablation = ablation_name(model.config)
        return LLM_SREC_LABEL if ablation is None else f"{LLM_SREC_LABEL} ({ABLATION_LABELS[ablation]})"
    if isinstance(model, SASRecModel):
        return SASREC_LABEL
    return type(model).__name__


class MeanEmbeddingControl:
    """Order-blind control model: a user is the mean of its history items' embeddings, an item its embedding.

    Why: a probe is only trustworthy if it reports "no order sensitivity" for a model that provably has none. The
    history is sorted before averaging, so the float sum (and every score) is bit-identical for any order.
    """

    def __init__(self, item_embeddings: torch.Tensor) -> None:
        if item_embeddings.dim() != 2:
            raise ValueError(f"item_embeddings must be (num_items + 1, d), got shape {tuple(item_embeddings.shape)}")
        self.table = item_embeddings.detach().float()
        self.embedding_size = self.table.shape[1]
        self.device = self.table.device

    @classmethod
    def from_sasrec(cls, sasrec: SASRecModel) -> MeanEmbeddingControl:
        """The control over a SASRec item table E (the embeddings LLM-SRec injects into its prompts)."""
        return cls(sasrec.item_embeddings)

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        return self.table[torch.as_tensor(item_ids, dtype=torch.long, device=self.device)]

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        return torch.stack([
            self.table[torch.as_tensor(sorted(history), dtype=torch.long, device=self.device)].mean(0)
            for history in histories
        ])


class RepresentationEncoder:
    """A `RankingEncoder` over any probed model that also exposes every named user representation, with caches.

    Why: the probes rank the same users many times (all users, each breakdown group, original and shuffled) and
    read their representations for the similarity; caching item vectors per item and user representations per
    (history, timestamps) means each is computed once. LLM-SRec yields ``h_U`` and ``f_user(h_U)`` (ranked with the
    latter) from one forward; SASRec yields ``O_u``; another `RankingEncoder` yields its user vector.
    """

    def __init__(self, model: ProbeModel, batch_size: int = 64) -> None:
        self._ranking = ranking_encoder(model)
        self.embedding_size = self._ranking.embedding_size
        self.device = self._ranking.device
        self.model = model if isinstance(model, nn.Module) else getattr(model, "model", None)
        self.batch_size = int(batch_size)
        if isinstance(model, LLMSRecForRecommendation):
            self.names, self.ranking_name = (H_U, F_USER), F_USER
        elif isinstance(model, SASRecModel):
            self.names, self.ranking_name = (O_U,), O_U
        elif isinstance(model, MeanEmbeddingControl):
            self.names, self.ranking_name = (MEAN_EMBEDDING,), MEAN_EMBEDDING
        else:
            self.names, self.ranking_name = ("user representation",), "user representation"
        self._users: dict[tuple[tuple[int, ...], tuple[int, ...]], dict[str, torch.Tensor]] = {}
        self._items: dict[int, torch.Tensor] = {}

    def _compute(self, histories: list[list[int]], timestamps: list[list[int]]) -> dict[str, torch.Tensor]:
        if isinstance(self.model, LLMSRecForRecommendation):
            processor = self._ranking.processor
            batch = processor(histories, timestamps=[list(times) or None for times in timestamps]).to(self.device)
            output = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                history_item_ids=batch["history_item_ids"],
            )
            return {H_U: output.user_hidden_states.float(), F_USER: output.user_embeddings.float()}
        return {self.ranking_name: self._ranking.encode_users(histories, timestamps).float()}

    def representations(
        self, histories: Sequence[Sequence[int]], timestamps: Sequence[Sequence[int]]
    ) -> dict[str, torch.Tensor]:
        """``{name: (B, d)}`` for histories of internal ids (oldest first) and their timestamps (may be empty)."""
        keys = [(tuple(int(i) for i in h), tuple(int(t) for t in times)) for h, times in zip(histories, timestamps)]
        missing = list(dict.fromkeys(key for key in keys if key not in self._users))
        if missing:
            was_training = self.model.training if self.model is not None else False
            if self.model is not None:
                self.model.eval()
            try:
                with torch.no_grad():
                    for start in range(0, len(missing), self.batch_size):
                        chunk = missing[start:start + self.batch_size]
                        vectors = self._compute([list(h) for h, _ in chunk], [list(t) for _, t in chunk])
                        for row, key in enumerate(chunk):
                            self._users[key] = {name: value[row].cpu() for name, value in vectors.items()}
            finally:
                if self.model is not None and was_training:
                    self.model.train()
        return {name: torch.stack([self._users[key][name] for key in keys]).to(self.device) for name in self.names}

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        return self.representations(histories, timestamps)[self.ranking_name]

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        missing = [int(item) for item in dict.fromkeys(item_ids) if int(item) not in self._items]
        if missing:
            with torch.no_grad():
                vectors = self._ranking.encode_items(missing).float()
            self._items.update({item: vector for item, vector in zip(missing, vectors)})
        return torch.stack([self._items[int(item)] for item in item_ids]).to(self.device)


# ------------------------------------------------------------------------------------------------- comparisons
def change_ratio(original: float, shuffled: float) -> float | None:
    """(shuffled - original) / original, the paper's "Change"; None when the original score is 0 (undefined)."""
    return None if original == 0 else (shuffled - original) / original


def compare_metrics(
    original: NestedMetrics, shuffled: NestedMetrics, metrics: Sequence[str] | None = None
) -> Comparison:
    """``{protocol: {metric: {"original": x, "shuffled": y, "change": r}}}`` (``change`` left out when undefined);
    ``num_users`` is not a metric and is dropped."""
    result: Comparison = {}
    for protocol, values in original.items():
        names = [name for name in values if name != "num_users"] if metrics is None else list(metrics)
        result[protocol] = {}
        for name in names:
            cell = {"original": float(values[name]), "shuffled": float(shuffled[protocol][name])}
            ratio = change_ratio(cell["original"], cell["shuffled"])
            if ratio is not None:
                cell["change"] = ratio
            result[protocol][name] = cell
    return result


def cosine_similarity_summary(original: torch.Tensor, shuffled: torch.Tensor) -> dict[str, float]:
    """Mean (the paper's Table 5 number) and standard deviation over users of the per-user cosine similarity."""
    cosines = torch.nn.functional.cosine_similarity(original.double(), shuffled.double(), dim=-1)
    return {"cosine": float(cosines.mean()), "std": float(cosines.std(unbiased=False))}


# -------------------------------------------------------------------------------------------------- breakdowns
def _pair_codes(sequences: Sequence[Sequence[int]], base: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``a * base + b`` of every consecutive pair (a -> b) within each sequence, and the owning sequence."""
    lengths = np.asarray([len(sequence) for sequence in sequences], dtype=np.int64)
    if lengths.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = np.concatenate([np.asarray(sequence, dtype=np.int64) for sequence in sequences])
    owner = np.repeat(np.arange(len(lengths)), lengths)
    same = owner[:-1] == owner[1:]
    return flat[:-1][same] * base + flat[1:][same], owner[:-1][same]


def transition_scores(
    histories: Sequence[Sequence[int]], training_sequences: Sequence[Sequence[int]], num_items: int
) -> np.ndarray:
    """t-score of each history (footnote 3): the mean, over its consecutive pairs i_t -> i_t+1, of how often that
    transition occurs in the training sequences (the paper's Count is read as the global count). 0 for < 2 items."""
    base = num_items + 1
    train_codes, _ = _pair_codes(training_sequences, base)
    known, counts = np.unique(train_codes, return_counts=True)
    codes, owner = _pair_codes(histories, base)
    pair_counts = np.zeros(len(codes))
    if len(known):
        found = np.minimum(np.searchsorted(known, codes), len(known) - 1)
        pair_counts = np.where(known[found] == codes, counts[found], 0).astype(np.float64)
    totals = np.bincount(owner, weights=pair_counts, minlength=len(histories))
    pairs = np.asarray([max(len(history) - 1, 0) for history in histories], dtype=np.float64)
    return np.divide(totals, pairs, out=np.zeros(len(histories)), where=pairs > 0)


def transition_groups(data: RecommendationData, split: Dataset) -> dict[str, np.ndarray]:
    """Row indices of ``split`` in the Transition set (top 50% of users by t-score of their history, ties kept in
    row order) and the Non-transition set (the rest); counts come from the training sequences (s[:-2])."""
    scores = transition_scores(split["history"], data.sequences("train"), data.num_items)
    order = np.argsort(-scores, kind="stable")
    top = int(np.ceil(len(order) * TRANSITION_FRACTION))
    return {TRANSITION: np.sort(order[:top]), NON_TRANSITION: np.sort(order[top:])}


def warm_cold_items(item_counts: np.ndarray, fraction: float = WARM_COLD_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Internal ids of the warm (top ``fraction`` of items by count) and cold (bottom ``fraction``) items; ties are
    broken by id so the sets are deterministic. ``item_counts`` has length num_items + 1 (index 0 = padding)."""
    counts = np.asarray(item_counts)[1:]
    order = np.argsort(-counts, kind="stable") + 1
    size = max(1, int(round(fraction * len(order))))
    return np.sort(order[:size]), np.sort(order[-size:])


def warm_cold_groups(data: RecommendationData, split: Dataset) -> dict[str, np.ndarray]:
    """Row indices of ``split`` whose target is a warm item and whose target is a cold item (counts over the
    training sequences, what the model could learn from); targets in the middle 30% are in neither group."""
    warm, cold = warm_cold_items(data.item_counts("train"))
    targets = np.asarray(split["target"], dtype=np.int64)
    return {WARM: np.flatnonzero(np.isin(targets, warm)), COLD: np.flatnonzero(np.isin(targets, cold))}


# ------------------------------------------------------------------------------------------------------ runner
@dataclass
class ProbeSubject:
    """One probed model: ``model`` is trained on original sequences; ``shuffled_training_model``, when given, is
    the same recipe trained on `shuffled_training_data` (Table 3 / Table 8 "Shuffle")."""

    label: str
    model: ProbeModel
    shuffled_training_model: ProbeModel | None = None


def select_users(split: Dataset, max_users: int | None, seed: int) -> Dataset:
    """At most ``max_users`` rows, the same seeded subset `RankingEvaluator` would rank (all rows when None)."""
    if max_users is None or max_users >= len(split):
        return split
    return split.select(np.sort(np.random.default_rng(seed).choice(len(split), size=max_users, replace=False)))


def run_probes(
    subjects: Sequence[ProbeSubject],
    data: RecommendationData,
    *,
    split: str = "test",
    shuffle_seed: int = 0,
    protocols: Sequence[str] = PROTOCOLS,
    num_negatives: int = 99,
    eval_seed: int = 0,
    max_users: int | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Run every probe on every subject and return the ``probe.json`` dict (run it in a single process).

    Args:
        subjects: the probed models with unique labels.
        data: the prepared data the models were trained on.
        split: the ranked split (the paper: test).
        shuffle_seed: seed of the per-user shuffles of the evaluation histories.
        protocols, num_negatives, eval_seed, max_users, batch_size: as `RankingEvaluator` (``max_users`` picks the
            same seeded subset of users for every probe).
        show_progress: tqdm bars for the rankings.

    Returns:
        ``{"setup": {...}, "shuffled_training": {label: comparison}, "shuffled_inference": {label: comparison},
        "representation_similarity": {label: {name: {"cosine", "std"}}}, "transition_breakdown": {label: {group:
        comparison}}, "warm_cold_breakdown": {...}}``, where a comparison is `compare_metrics`'s
        ``{protocol: {metric: {"original", "shuffled", "change"}}}``; ``shuffled_training`` only holds subjects with
        a shuffled-training model and is absent when none has one.
    """
    labels = [subject.label for subject in subjects]
    if not subjects or len(set(labels)) != len(labels):
        raise ValueError(f"need at least one subject, with unique labels; got {labels}")
    if split not in data.splits:
        raise ValueError(f"unknown split {split!r}; the data has {sorted(data.splits)}")
    original_split = select_users(data.splits[split], max_users, eval_seed)
    views = {"original": original_split, "shuffled": shuffle_histories(original_split, shuffle_seed)}
    groups = {**transition_groups(data, original_split), **warm_cold_groups(data, original_split)}

    def evaluator(rows: Dataset) -> RankingEvaluator:
        return RankingEvaluator(rows, data.num_items, protocols, num_negatives, eval_seed, None, batch_size)

    evaluators = {view: evaluator(rows) for view, rows in views.items()}
    group_evaluators = {
        (group, view): evaluator(rows.select(indices))
        for group, indices in groups.items() if len(indices)
        for view, rows in views.items()
    }
    warm, cold = warm_cold_items(data.item_counts("train"))
    result: dict[str, Any] = {SETUP: {
        "dataset": data.info.get("name", ""),
        "split": split,
        "users": len(original_split),
        "shuffle_seed": shuffle_seed,
        "protocols": list(evaluators["original"].labels.values()),
        "transition_users": len(groups[TRANSITION]),
        "non_transition_users": len(groups[NON_TRANSITION]),
        "warm_items": len(warm),
        "cold_items": len(cold),
        "warm_target_users": len(groups[WARM]),
        "cold_target_users": len(groups[COLD]),
    }}
    sections: dict[str, dict[str, Any]] = {
        SHUFFLED_TRAINING: {}, SHUFFLED_INFERENCE: {}, REPRESENTATION_SIMILARITY: {},
        TRANSITION_BREAKDOWN: {}, WARM_COLD_BREAKDOWN: {},
    }
    for subject in subjects:
        encoder = RepresentationEncoder(subject.model, batch_size)
        ranked = {
            view: evaluators[view].evaluate(encoder, show_progress, f"{subject.label} ({view})") for view in views
        }
        if subject.shuffled_training_model is not None:
            shuffled_trained = evaluators["original"].evaluate(
                subject.shuffled_training_model, show_progress, f"{subject.label} (trained on shuffled)"
            )
            sections[SHUFFLED_TRAINING][subject.label] = compare_metrics(ranked["original"], shuffled_trained)
        sections[SHUFFLED_INFERENCE][subject.label] = compare_metrics(ranked["original"], ranked["shuffled"])
        original_vectors = encoder.representations(evaluators["original"].histories, evaluators["original"].timestamps)
        shuffled_vectors = encoder.representations(evaluators["shuffled"].histories, evaluators["shuffled"].timestamps)
        sections[REPRESENTATION_SIMILARITY][subject.label] = {
            name: cosine_similarity_summary(original_vectors[name], shuffled_vectors[name]) for name in encoder.names
        }
        for section, names in BREAKDOWNS.items():
            sections[section][subject.label] = {
                group: compare_metrics(
                    *(group_evaluators[(group, view)].evaluate(encoder, show_progress, f"{subject.label} ({group})")
                      for view in views),
                    BREAKDOWN_METRICS,
                )
                for group in names if (group, "original") in group_evaluators
            }
        logger.info("probed %s", subject.label)
    result.update({section: content for section, content in sections.items() if content})
    return result


def probe_subjects(
    model: LLMSRecForRecommendation | SASRecModel,
    sasrec: SASRecModel | None = None,
    shuffled_training_model: LLMSRecForRecommendation | SASRecModel | None = None,
    ablations: Mapping[str, tuple[LLMSRecForRecommendation, LLMSRecForRecommendation | None]] | None = None,
    control: bool = True,
) -> list[ProbeSubject]:
    """The subjects of a standard probe run: the model, its ablations, the SASRec to compare with, the control.

    Args:
        model: the probed LLM-SRec or SASRec model.
        sasrec: the SASRec compared with an LLM-SRec model; default: its own frozen teacher (the paper compares
            LLM-SRec with the very SASRec it distils). Not used when ``model`` is a SASRec.
        shuffled_training_model: ``model``'s recipe trained on shuffled training histories.
        ablations: ``{ablation name: (trained on original, trained on shuffled or None)}``.
        control: add the `MeanEmbeddingControl` over the SASRec item table.
    """
    subjects = [ProbeSubject(model_label(model), model, shuffled_training_model)]
    for name, (original, shuffled) in (ablations or {}).items():
        subjects.append(ProbeSubject(f"{LLM_SREC_LABEL} ({ABLATION_LABELS[name]})", original, shuffled))
    if isinstance(model, LLMSRecForRecommendation):
        sasrec = sasrec if sasrec is not None else model.sasrec
        label = f"{SASREC_LABEL} (teacher)" if sasrec is model.sasrec else SASREC_LABEL
        subjects.append(ProbeSubject(label, sasrec))
    else:
        sasrec = model
    if control:
        subjects.append(ProbeSubject(CONTROL_LABEL, MeanEmbeddingControl.from_sasrec(sasrec)))
    return subjects


__all__ = [
    "ABLATION_LABELS",
    "BREAKDOWN_METRICS",
    "CONTROL_LABEL",
    "MeanEmbeddingControl",
    "ProbeSubject",
    "RepresentationEncoder",
    "ablation_name",
    "change_ratio",
    "compare_metrics",
    "cosine_similarity_summary",
    "model_label",
    "probe_subjects",
    "run_probes",
    "select_users",
    "transition_groups",
    "transition_scores",
    "warm_cold_groups",
    "warm_cold_items",
]
