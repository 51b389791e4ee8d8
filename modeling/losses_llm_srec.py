"""LLM-SRec's loss terms (PAPER.md §3, §9): retrieval, distillation, uniformity, score and item distillation.

Why a module of its own: the terms are plain functions of the vectors the model computes, so each recipe option
reads as one branch here rather than inside `forward`, and the heads stay free of training-only code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

LOSS_TERMS = (
    "retrieval_loss", "distillation_loss", "uniformity_loss", "score_distillation_loss", "item_distillation_loss"
)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)) restricted to the ``valid`` columns."""
    student = F.log_softmax(student_logits.masked_fill(~valid, float("-inf")), dim=-1).masked_fill(~valid, 0.0)
    teacher = F.softmax(teacher_logits.masked_fill(~valid, float("-inf")), dim=-1)
    return (torch.special.xlogy(teacher, teacher) - teacher * student).sum(-1).mean()


def uniformity(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean of exp(-2 ||x_i - x_j||^2) over distinct in-batch pairs (the code's form: no log); 0 for one row.

    Computed in float32: `pdist` has no bfloat16 kernel on CPU, which bf16 autocast would otherwise hand it."""
    if embeddings.shape[0] < 2:
        return embeddings.new_zeros((), dtype=torch.float32)
    return torch.pdist(embeddings.float(), p=2).pow(2).mul(-2).exp().mean()


def ranked_candidates(
    in_batch_negatives: bool,
    logits: torch.Tensor,
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    candidate_item_ids: torch.LongTensor,
    labels: torch.LongTensor,
    seen_item_ids: torch.LongTensor | None,
) -> tuple[torch.Tensor, torch.LongTensor, torch.LongTensor, torch.Tensor]:
    """Scores, item ids, target column and validity mask of the candidates each user's target is ranked among.

    Without ``in_batch_negatives``: the user's own ``C`` candidates (``logits``), all valid. With it: all ``B*C``
    candidates of the batch, where another row's copy of the user's target, or an item the user has seen
    (``seen_item_ids``, 0-padded), is masked out as a false negative.
    """
    candidate_item_ids = candidate_item_ids.to(user_embeddings.device)
    if not in_batch_negatives:
        return logits, candidate_item_ids, labels, torch.ones_like(logits, dtype=torch.bool)
    batch_size, num_candidates = candidate_item_ids.shape
    flat_items = candidate_item_ids.reshape(-1)
    logits = user_embeddings @ item_embeddings.reshape(batch_size * num_candidates, -1).t()
    columns = torch.arange(batch_size, device=labels.device) * num_candidates + labels
    targets = flat_items[columns]
    invalid = flat_items.unsqueeze(0) == targets.unsqueeze(1)
    if seen_item_ids is not None:
        seen = seen_item_ids.to(flat_items.device)
        invalid |= ((seen.unsqueeze(-1) == flat_items.view(1, 1, -1)) & (seen.unsqueeze(-1) > 0)).any(1)
    own = torch.zeros_like(invalid)
    own[torch.arange(batch_size, device=own.device), columns] = True
    return logits, flat_items.unsqueeze(0).expand(batch_size, -1), columns, ~invalid | own


def distillation_losses(config: Any, user_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> dict:
    """The distillation (MSE on unit vectors, or the contrastive Eq. 10) and uniformity terms that are enabled."""
    losses: dict[str, torch.Tensor] = {}
    users = F.normalize(user_embeddings, dim=-1)
    teachers = F.normalize(teacher_embeddings, dim=-1)
    if config.distillation_loss_weight > 0:
        if config.distillation_loss == "mse":
            losses["distillation_loss"] = F.mse_loss(users, teachers)
        else:
            similarities = users @ teachers.t() / config.contrastive_temperature
            targets = torch.arange(similarities.shape[0], device=similarities.device)
            losses["distillation_loss"] = F.cross_entropy(similarities, targets)
    if config.uniformity_loss_weight > 0:
        losses["uniformity_loss"] = uniformity(users) + uniformity(teachers)
    return losses


def weighted_loss(config: Any, losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The sum of the enabled terms, each times its ``<term>_weight`` in the config; None when none is enabled."""
    if not losses:
        return None
    return torch.stack([getattr(config, f"{name}_weight") * value for name, value in losses.items()]).sum()


__all__ = [
    "LOSS_TERMS", "distillation_losses", "ranked_candidates", "soft_cross_entropy", "uniformity", "weighted_loss",
]
