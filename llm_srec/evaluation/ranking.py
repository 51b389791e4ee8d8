"""Ranking evaluation of LLM-SRec and its SASRec teacher under two always-labelled protocols.

Why one evaluator for both models: the paper compares LLM-SRec with its teacher, so both must be ranked on the same
users, the same seeded candidate lists and the same tie rule. A model only has to say how it encodes items and
users (`SASRecEncoder`, `LLMSRecEncoder`); everything else (candidates, scoring, ranks, reduction) is shared.

Per evaluation the item index (the items the protocols read, through the model's item side) is computed once, split
across processes in fixed batches and gathered; users are then scored against it in fixed batches, also split across
processes. Because a batch holds the same items/users whatever the process count, every process count gives the
same scores, and `RankingMetrics` (keyed by `user_index`) counts each user exactly once.

Why the batches are ordered: a batch of user prompts is padded to its longest prompt, so users are batched by prompt
length (longest first) when the encoder can say how long its prompts are (an optional
``prompt_lengths(histories, timestamps)``); the order is computed once from the split alone, so it is the same on
every process. Under the sampled protocol alone only the candidates' union is encoded: the other index rows are never
read and stay zero.

Protocols (labels from `llm_srec.evaluation.metrics`):

- ``sampled(1+N, seed=S)``: the target against N negatives drawn with `user_rng(S, user_index)` from the items not
  in the user's known sequence (the split row's history + target), identical across runs and process counts.
- ``full-catalog``: the target against every catalog item; the user's history is excluded (except the target).

Metric-key scheme: nested ``{protocol label: {metric: value}}`` (as in metrics.json) and, for Trainer logs, the
flat ``"{prefix}_{protocol label}/{metric}"`` (e.g. ``eval_sampled(1+99, seed=0)/HR@10``), see `flatten_metrics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather, pad_across_processes
from datasets import Dataset
from tqdm.auto import tqdm

from llm_srec.data.collators import left_pad, user_prompt_lengths
from llm_srec.data.sampling import sample_negatives, user_rng
from llm_srec.modeling import LLMSRecForRecommendation, LLMSRecProcessor, SASRecModel

from .metrics import (
    DEFAULT_KS,
    FULL_CATALOG,
    PROTOCOLS,
    RankingMetrics,
    protocol_labels,
    random_ranker_expectation,
    target_ranks,
)

NestedMetrics = dict[str, dict[str, float]]


class RankingEncoder(Protocol):
    """What the evaluator needs from a model: item vectors and user vectors in one dot-product space."""

    embedding_size: int
    device: torch.device

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        """``(len(item_ids), d)`` vectors of internal item ids."""

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        """``(B, d)`` vectors of histories of internal ids (oldest first); timestamps may be empty lists."""


class PromptLengthEncoder(RankingEncoder, Protocol):
    """An encoder whose user inputs vary in length; the evaluator then batches users of similar length together."""

    def prompt_lengths(self, histories: list[list[int]], timestamps: list[list[int]]) -> list[int]:
        """The input length (e.g. prompt tokens) `encode_users` pads each user to, one per history."""


class SASRecEncoder:
    """SASRec: O_u from the left-padded history, items from the embedding table E (PAPER.md §4.2, score O_u·E_i)."""

    def __init__(self, model: SASRecModel) -> None:
        self.model = model
        self.embedding_size = model.config.hidden_size
        self.device = model.item_embeddings.device

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        return self.model.item_embeddings[torch.as_tensor(item_ids, device=self.device)].float()

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        input_ids = left_pad(histories, self.model.config.max_position_embeddings).to(self.device)
        return self.model.encode_users(input_ids).float()


class LLMSRecEncoder:
    """LLM-SRec: f_item(h_I) of item prompts and f_user(h_U) of user prompts, rendered by the model's processor."""

    def __init__(self, model: LLMSRecForRecommendation, processor: LLMSRecProcessor | None = None) -> None:
        processor = processor if processor is not None else model.processor
        if processor is None or processor.item_catalog is None:
            raise ValueError(
                "LLM-SRec evaluation needs a processor with an item catalog: attach one with model.processor = "
                "LLMSRecProcessor.from_config(model.config, tokenizer, catalog)."
            )
        self.model = model
        self.processor = processor
        self.embedding_size = model.config.embedding_size
        self.device = model.user_out_embedding.device

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        index = self.model.item_index if self.processor is self.model.processor else None
        if index is not None:  # the model's up-to-date item index (e.g. loaded with it): no backbone forward
            return index[torch.as_tensor(item_ids, device=index.device) - 1].float()
        batch = self.processor.encode_items(item_ids).to(self.device)
        return self.model.encode_items(batch["input_ids"], batch["attention_mask"], batch["item_ids"]).float()

    def prompt_lengths(self, histories: list[list[int]], timestamps: list[list[int]]) -> list[int]:
        """Token length of each user prompt, so the evaluator batches users of similar length together."""
        return user_prompt_lengths(self.processor, histories, timestamps)

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        batch = self.processor(histories, timestamps=[list(times) or None for times in timestamps]).to(self.device)
        return self.model.encode_users(
            batch["input_ids"], batch["attention_mask"], batch["history_item_ids"]
        ).float()


def ranking_encoder(model: SASRecModel | LLMSRecForRecommendation | RankingEncoder) -> RankingEncoder:
    """The encoder of a model (a `RankingEncoder` is returned as is)."""
    if isinstance(model, LLMSRecForRecommendation):
        return LLMSRecEncoder(model)
    if isinstance(model, SASRecModel):
        return SASRecEncoder(model)
    if hasattr(model, "encode_items") and hasattr(model, "encode_users") and hasattr(model, "embedding_size"):
        return model
    raise ValueError(f"Cannot rank with a {type(model).__name__}: expected an LLM-SRec or SASRec model.")


def flatten_metrics(metrics: Mapping[str, Mapping[str, float]], prefix: str = "eval") -> dict[str, float]:
    """``{protocol: {metric: v}}`` -> ``{"{prefix}_{protocol}/{metric}": v}`` (the Trainer-log form)."""
    start = f"{prefix}_" if prefix else ""
    return {f"{start}{protocol}/{name}": value for protocol, values in metrics.items() for name, value in values.items()}


def nest_metrics(flat: Mapping[str, float], prefix: str = "eval") -> NestedMetrics:
    """Inverse of `flatten_metrics`; keys without a protocol part (runtime, epoch ...) are left out."""
    start = f"{prefix}_" if prefix else ""
    nested: NestedMetrics = {}
    for key, value in flat.items():
        if key.startswith(start) and "/" in key:
            protocol, name = key[len(start):].rsplit("/", 1)
            nested.setdefault(protocol, {})[name] = value
    return nested


@contextlib.contextmanager
def _inference_mode(model: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode and no grad for the evaluation; the model's previous mode is restored afterwards."""
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if model is not None and was_training:
            model.train()


class RankingEvaluator:
    """Ranks one split's users under the chosen protocols; candidate lists are built once and reused.

    Args:
        split: rows with the DESIGN.md split columns (``user_index``, ``history``, ``history_timestamps``,
            ``target``), e.g. ``data.splits["validation"]``.
        num_items: catalog size (internal ids ``1..num_items``).
        protocols: any of ``"sampled"``, ``"full"``.
        num_negatives: negatives of the sampled protocol (99: 1 + 99 candidates, the paper).
        seed: seed of the sampled negatives, and of the user subset when ``max_users`` is set.
        max_users: evaluate a seeded random subset of at most this many users (the code: 10,000); None: all.
        batch_size: users (and items, for the index) per forward pass on each process.
        ks: cut-offs of NDCG@K / HR@K.
        length_grouping: batch users by the encoder's ``prompt_lengths`` (longest first, ties in split order), so
            a batch pads less; False (or an encoder without ``prompt_lengths``) batches them in split order. Scores
            match either way up to float rounding of the padded forward passes.
    """

    def __init__(
        self,
        split: Dataset,
        num_items: int,
        protocols: Sequence[str] = PROTOCOLS,
        num_negatives: int = 99,
        seed: int = 0,
        max_users: int | None = None,
        batch_size: int = 64,
        ks: Sequence[int] = DEFAULT_KS,
        length_grouping: bool = True,
    ) -> None:
        missing = {"user_index", "history", "history_timestamps", "target"} - set(split.column_names)
        if missing:
            raise ValueError(f"the evaluation split lacks the column(s) {sorted(missing)}")
        if len(split) == 0:
            raise ValueError("the evaluation split has no rows")
        if num_negatives < 1 or batch_size < 1 or (max_users is not None and max_users < 1):
            raise ValueError(
                f"need num_negatives >= 1, batch_size >= 1 and max_users >= 1 (or None), got {num_negatives}, "
                f"{batch_size}, {max_users}"
            )
        self.labels = protocol_labels(protocols, num_negatives, seed)
        self.num_items = int(num_items)
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.ks = tuple(ks)
        self.length_grouping = bool(length_grouping)
        rows = np.arange(len(split))
        if max_users is not None and max_users < len(split):
            rows = np.sort(np.random.default_rng(self.seed).choice(len(split), size=max_users, replace=False))
            split = split.select(rows)
        columns = split.select_columns(["user_index", "history", "history_timestamps", "target"])[:]
        self.user_index = np.asarray(columns["user_index"], dtype=np.int64)
        self.histories: list[list[int]] = [list(history) for history in columns["history"]]
        self.timestamps: list[list[int]] = [list(times) for times in columns["history_timestamps"]]
        self.targets = np.asarray(columns["target"], dtype=np.int64)
        if len(np.unique(self.user_index)) != len(self.user_index):
            raise ValueError("the evaluation split holds a user twice; rank each user once per split")
        empty = [int(user) for user, history in zip(self.user_index, self.histories) if not history]
        if empty:
            raise ValueError(f"users {empty[:10]} have an empty history: nothing to rank them from")
        out_of_range = (self.targets < 1) | (self.targets > self.num_items)
        if out_of_range.any():
            raise ValueError(f"targets {self.targets[out_of_range][:10].tolist()} are outside 1..{self.num_items}")
        self._candidates: np.ndarray | None = None
        self._index_items: np.ndarray | None = None
        self._prompt_lengths: tuple[object, list[int]] | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_index)

    @property
    def candidates(self) -> np.ndarray:
        """``(num_users, 1 + num_negatives)`` sampled-protocol candidates, target in column 0 (built once)."""
        if self._candidates is None:
            self._candidates = np.stack([
                np.concatenate([
                    [target],
                    sample_negatives(
                        self.num_items, np.asarray([*history, target]), self.num_negatives, user_rng(self.seed, user)
                    ),
                ])
                for user, history, target in zip(self.user_index, self.histories, self.targets)
            ]).astype(np.int64)
        return self._candidates

    @property
    def index_items(self) -> np.ndarray:
        """Sorted item ids the item index encodes: the whole catalog for the full-catalog protocol, else only the
        union of the sampled candidate lists (the only rows scoring reads)."""
        if self._index_items is None:
            if "full" in self.labels:
                self._index_items = np.arange(1, self.num_items + 1, dtype=np.int64)
            else:
                self._index_items = np.unique(self.candidates)
        return self._index_items

    def user_batches(self, encoder: RankingEncoder) -> list[np.ndarray]:
        """Row numbers of each user batch, in batch order (batch ``b`` goes to process ``b % num_processes``).

        With ``length_grouping`` and an encoder with ``prompt_lengths``, rows are sorted by prompt length, longest
        first and ties in split order (a stable sort), then cut into ``batch_size`` batches; the lengths depend on
        the split and the encoder only, so every process count forms the same batches.
        """
        prompt_lengths = getattr(encoder, "prompt_lengths", None) if self.length_grouping else None
        if callable(prompt_lengths):
            # the users are fixed, so their lengths are measured once per processor (a tokenisation pass)
            key = getattr(encoder, "processor", encoder)
            if self._prompt_lengths is None or self._prompt_lengths[0] is not key:
                self._prompt_lengths = (key, prompt_lengths(self.histories, self.timestamps))
            lengths = np.asarray(self._prompt_lengths[1], dtype=np.int64)
            if lengths.shape != (self.num_users,):
                raise ValueError(
                    f"{type(encoder).__name__}.prompt_lengths returned {lengths.shape[0] if lengths.ndim else 0} "
                    f"lengths for {self.num_users} users; it must return one per history"
                )
            order = np.argsort(-lengths, kind="stable")
        else:
            order = np.arange(self.num_users)
        return [order[start : start + self.batch_size] for start in range(0, self.num_users, self.batch_size)]

    def random_ranker(self) -> NestedMetrics:
        """Expected metrics of a ranker that orders each user's candidates uniformly at random, under the same
        protocols and users (full-catalog: each user's own candidate count, the catalog minus the history)."""
        candidates = {"sampled": np.full(self.num_users, 1 + self.num_negatives)}
        if "full" in self.labels:
            candidates["full"] = np.asarray([
                self.num_items - len(set(history) - {target}) for history, target in zip(self.histories, self.targets)
            ])
        results: NestedMetrics = {}
        for name, label in self.labels.items():
            counts, frequency = np.unique(candidates[name], return_counts=True)
            weights = frequency / frequency.sum()
            metrics: dict[str, float] = {}
            for k in self.ks:
                expectations = [random_ranker_expectation(int(count), k) for count in counts]
                metrics[f"NDCG@{k}"] = float(sum(w * e[f"NDCG@{k}"] for w, e in zip(weights, expectations)))
                metrics[f"HR@{k}"] = float(sum(w * e[f"HR@{k}"] for w, e in zip(weights, expectations)))
            metrics["num_users"] = float(self.num_users)
            results[label] = metrics
        return results

    def evaluate(
        self,
        model: SASRecModel | LLMSRecForRecommendation | RankingEncoder,
        show_progress: bool = True,
        description: str = "Ranking",
    ) -> NestedMetrics:
        """``{protocol label: {"NDCG@10": ..., "HR@10": ..., ..., "num_users": n}}`` on every process.

        Run it on every process of a distributed job (each scores its share, the ranks are gathered).
        """
        state = PartialState()
        encoder = ranking_encoder(model)
        module = model if isinstance(model, torch.nn.Module) else getattr(encoder, "model", None)
        candidates = self.candidates if "sampled" in self.labels else None
        with _inference_mode(module):
            index = self._item_index(encoder, state, show_progress, description)
            local = {label: ([], []) for label in self.labels.values()}
            batches = self.user_batches(encoder)[state.process_index :: state.num_processes]
            progress = tqdm(
                batches, desc=f"{description}: users", disable=not (show_progress and state.is_local_main_process)
            )
            for rows in progress:
                histories = [self.histories[row] for row in rows]
                timestamps = [self.timestamps[row] for row in rows]
                users = encoder.encode_users(histories, timestamps).to(index.device)
                user_index = torch.as_tensor(self.user_index[rows], device=index.device)
                targets = torch.as_tensor(self.targets[rows], device=index.device)
                if candidates is not None:
                    batch_candidates = torch.as_tensor(candidates[rows], device=index.device)
                    scores = torch.einsum("bd,bcd->bc", users, index[batch_candidates])
                    label = self.labels["sampled"]
                    local[label][0].append(user_index)
                    local[label][1].append(target_ranks(scores, 0))
                if "full" in self.labels:
                    scores = self._full_catalog_scores(users, index, histories, targets)
                    local[FULL_CATALOG][0].append(user_index)
                    local[FULL_CATALOG][1].append(target_ranks(scores, targets))
        results: NestedMetrics = {}
        for label, (users, ranks) in local.items():
            metrics = RankingMetrics(label, self.ks)
            user_tensor, rank_tensor = self._gather(users, ranks, state)
            metrics.update(rank_tensor, user_tensor)
            results[label] = metrics.compute()
        return results

    def _item_index(
        self, encoder: RankingEncoder, state: PartialState, show_progress: bool, description: str
    ) -> torch.Tensor:
        """``(num_items + 1, d)`` item vectors of `index_items` (the other rows, and row 0, padding, stay zero): fixed
        batches of sorted ids, round-robin over processes, then gathered so every process holds the whole index."""
        device = encoder.device
        items = self.index_items
        starts = range(state.process_index * self.batch_size, len(items), self.batch_size * state.num_processes)
        ids, vectors = [], []
        progress = tqdm(starts, desc=f"{description}: items", disable=not (show_progress and state.is_local_main_process))
        for start in progress:
            batch = items[start : start + self.batch_size].tolist()
            ids.append(torch.as_tensor(batch, device=device))
            vectors.append(encoder.encode_items(batch).to(device))
        local_ids = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long, device=device)
        local_vectors = torch.cat(vectors) if vectors else torch.zeros(0, encoder.embedding_size, device=device)
        if state.num_processes > 1:
            local_ids = gather(pad_across_processes(local_ids, dim=0, pad_index=0))
            local_vectors = gather(pad_across_processes(local_vectors, dim=0, pad_index=0))
        index = torch.zeros(self.num_items + 1, local_vectors.shape[-1], device=device, dtype=local_vectors.dtype)
        real = local_ids > 0
        index[local_ids[real]] = local_vectors[real]
        return index

    @staticmethod
    def _full_catalog_scores(
        users: torch.Tensor, index: torch.Tensor, histories: list[list[int]], targets: torch.Tensor
    ) -> torch.Tensor:
        """Scores over the whole catalog with padding and the history set to -inf, the target kept."""
        scores = users @ index.t()
        rows = torch.arange(scores.shape[0], device=scores.device)
        target_scores = scores[rows, targets]
        history = left_pad(histories, max(len(h) for h in histories)).to(scores.device)
        scores.scatter_(1, history, float("-inf"))  # 0-padding hits column 0, which is excluded anyway
        scores[:, 0] = float("-inf")
        scores[rows, targets] = target_scores
        return scores

    @staticmethod
    def _gather(
        users: list[torch.Tensor], ranks: list[torch.Tensor], state: PartialState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All processes' (user_index, rank) pairs; padding rows (user -1) are dropped."""
        device = state.device if state.num_processes > 1 else torch.device("cpu")
        user_tensor = torch.cat(users).to(device) if users else torch.zeros(0, dtype=torch.long, device=device)
        rank_tensor = torch.cat(ranks).to(device) if ranks else torch.zeros(0, dtype=torch.long, device=device)
        if state.num_processes > 1:
            user_tensor = gather(pad_across_processes(user_tensor, dim=0, pad_index=-1))
            rank_tensor = gather(pad_across_processes(rank_tensor, dim=0, pad_index=-1))
        kept = user_tensor >= 0
        return user_tensor[kept].cpu(), rank_tensor[kept].cpu()


def format_metrics_table(rows: Mapping[str, Mapping[str, Mapping[str, float]]], ks: Sequence[int] = DEFAULT_KS) -> str:
    """A plain-text table, one line per (row name, protocol): ``{name: {protocol label: {metric: value}}}``."""
    columns = [f"{metric}@{k}" for metric in ("NDCG", "HR") for k in ks]
    lines = [(name, protocol, [f"{values[column]:.4f}" for column in columns], f"{values.get('num_users', 0):.0f}")
             for name, nested in rows.items() for protocol, values in nested.items()]
    header = ("model", "protocol", columns, "users")
    widths = [max(len(line[0]) for line in [header, *lines]), max(len(line[1]) for line in [header, *lines])]

    def render(name: str, protocol: str, values: list[str], users: str) -> str:
        cells = [name.ljust(widths[0]), protocol.ljust(widths[1]), *(value.rjust(7) for value in values), users.rjust(6)]
        return " | ".join(cells)

    rule = "-+-".join(["-" * widths[0], "-" * widths[1], *["-" * 7] * len(columns), "-" * 6])
    return "\n".join([render(*header), rule, *(render(*line) for line in lines)])


def evaluate_ranking(
    model: SASRecModel | LLMSRecForRecommendation | RankingEncoder,
    split: Dataset,
    num_items: int,
    protocols: Sequence[str] = PROTOCOLS,
    num_negatives: int = 99,
    seed: int = 0,
    max_users: int | None = None,
    batch_size: int = 64,
    ks: Sequence[int] = DEFAULT_KS,
    show_progress: bool = True,
    length_grouping: bool = True,
) -> NestedMetrics:
    """One-shot `RankingEvaluator(...).evaluate(model)`: ``{protocol label: {metric: value}}``."""
    evaluator = RankingEvaluator(
        split, num_items, protocols, num_negatives, seed, max_users, batch_size, ks, length_grouping
    )
    return evaluator.evaluate(model, show_progress=show_progress)


__all__ = [
    "LLMSRecEncoder",
    "PromptLengthEncoder",
    "RankingEncoder",
    "RankingEvaluator",
    "SASRecEncoder",
    "evaluate_ranking",
    "flatten_metrics",
    "format_metrics_table",
    "nest_metrics",
    "ranking_encoder",
]
