"""Ranking metrics (NDCG@K, HR@K) from per-user target ranks, with the protocol always attached.

Ranks are computed once per user and the metrics are reduced from them, so every process count and batch
size gives the same numbers: per-user ranks are gathered (keyed by `user_index`, duplicates from padded
distributed batches are dropped) before averaging, the way torchrec metrics keep reducible state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

FULL_CATALOG = "full-catalog"
PROTOCOLS = ("sampled", "full")
DEFAULT_KS: tuple[int, ...] = (10, 20)


def sampled_protocol(num_negatives: int = 99, seed: int = 0) -> str:
    """Label of the sampled protocol: the target ranked against `num_negatives` seeded negatives."""
    return f"sampled(1+{num_negatives}, seed={seed})"


def protocol_labels(protocols: Sequence[str], num_negatives: int, seed: int) -> dict[str, str]:
    """``{"sampled": "sampled(1+99, seed=0)", "full": "full-catalog"}`` restricted to ``protocols``."""
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown or not protocols:
        raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {list(protocols)}")
    labels = {"sampled": sampled_protocol(num_negatives, seed), "full": FULL_CATALOG}
    return {name: labels[name] for name in PROTOCOLS if name in protocols}


def target_ranks(scores: torch.Tensor, target_index: torch.Tensor | int = 0) -> torch.Tensor:
    """0-based rank of each row's target among its candidates, with pessimistic ties.

    A candidate ranks above the target when its score is strictly higher, or equal (a tie counts against the
    target), so a model that scores everything alike gets rank C-1, never 0. Candidates scored `-inf` are
    excluded items and never count. Scores must be finite or `-inf`: NaN is rejected, never ranked.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (batch, candidates), got shape {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; cannot rank candidates")
    if isinstance(target_index, int):
        target_index = torch.full((scores.shape[0],), target_index, dtype=torch.long, device=scores.device)
    target_index = target_index.to(device=scores.device, dtype=torch.long)
    if ((target_index < 0) | (target_index >= scores.shape[1])).any():
        raise ValueError(f"target_index out of range for {scores.shape[1]} candidates")
    target_scores = scores.gather(1, target_index.unsqueeze(1))
    if torch.isinf(target_scores).any() and (target_scores < 0).any():
        raise ValueError("a target is scored -inf (excluded); it cannot be ranked")
    at_least = (scores >= target_scores).sum(dim=1)
    return at_least - 1


def ndcg_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@K for a single relevant item: 1/log2(rank+2) if rank < K else 0."""
    ranks = ranks.to(torch.float64)
    return torch.where(ranks < k, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks))


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user HR@K: 1 if the target is within the top K."""
    return (ranks < k).to(torch.float64)


@dataclass
class RankingMetrics:
    """Accumulates per-user ranks for one protocol and reduces them to NDCG@K / HR@K.

    `update` takes the ranks of a batch with each user's `user_index`; `merge` combines the states of
    several processes or shards; `compute` averages over distinct users. A user seen twice with the same rank
    (a padded distributed batch) is counted once; seen twice with different ranks is an error, since the
    protocol is then not deterministic.
    """

    protocol: str
    ks: Sequence[int] = DEFAULT_KS
    _ranks: dict[int, int] = field(default_factory=dict, repr=False)

    def update(self, ranks: torch.Tensor, user_index: torch.Tensor | Iterable[int]) -> None:
        user_list = [int(u) for u in (user_index.tolist() if torch.is_tensor(user_index) else user_index)]
        rank_list = [int(r) for r in ranks.tolist()]
        if len(user_list) != len(rank_list):
            raise ValueError(f"{len(rank_list)} ranks for {len(user_list)} users")
        for user, rank in zip(user_list, rank_list):
            previous = self._ranks.setdefault(user, rank)
            if previous != rank:
                raise ValueError(f"user {user} ranked twice with different ranks ({previous} vs {rank})")

    def merge(self, other: "RankingMetrics") -> "RankingMetrics":
        if other.protocol != self.protocol:
            raise ValueError(f"cannot merge {other.protocol} into {self.protocol}")
        users = torch.tensor(list(other._ranks), dtype=torch.long)
        self.update(torch.tensor(list(other._ranks.values()), dtype=torch.long), users)
        return self

    @property
    def num_users(self) -> int:
        return len(self._ranks)

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_index, rank) tensors, the state to gather across processes."""
        users = torch.tensor(list(self._ranks), dtype=torch.long)
        return users, torch.tensor(list(self._ranks.values()), dtype=torch.long)

    def compute(self) -> dict[str, float]:
        """Mean metrics over users, keyed like `NDCG@10`; empty state is an error, not NaN."""
        if not self._ranks:
            raise ValueError(f"no users were ranked under {self.protocol}; cannot compute metrics")
        # Summed in user order, so the float result is the same whatever order processes were merged in.
        ranks = torch.tensor([self._ranks[user] for user in sorted(self._ranks)], dtype=torch.long)
        result: dict[str, float] = {}
        for k in self.ks:
            result[f"NDCG@{k}"] = float(ndcg_at_k(ranks, k).mean())
            result[f"HR@{k}"] = float(hit_rate_at_k(ranks, k).mean())
        result["num_users"] = float(len(ranks))
        return result


def random_ranker_expectation(num_candidates: int, k: int) -> dict[str, float]:
    """Expected NDCG@K and HR@K of a ranker that orders candidates uniformly at random (a baseline)."""
    top = min(k, num_candidates)
    return {
        f"NDCG@{k}": sum(1.0 / math.log2(r + 2) for r in range(top)) / num_candidates,
        f"HR@{k}": top / num_candidates,
    }
