"""The recipe's capacity check: LLM-SRec's heads, losses, collator, Trainer and evaluator on oracle features.

`attach_oracle(model, "teacher")` makes the model's output-token states the SASRec teacher's own vectors, computed
from the same item ids the prompts carry: h_U = O_u of the history the prompt shows, h_I = E_i. ``"bag"`` is the
order-blind control: h_U = the mean of the shown items' E_i. The backbone is then never run. Why: with perfect
information a recipe that cannot reach its teacher here cannot beat it with any backbone, and a gap measured here
is the recipe's, not the LLM's. `bench/oracle.py` runs it on real data.

The oracle is a plain callable held by the model (`LLMSRecForRecommendation.state_override`), never a submodule, so
checkpoints, `load_best_model_at_end` and the evaluator are untouched; `detach_oracle` restores the backbone path.
"""

from __future__ import annotations

import torch

from llm_srec.modeling import LLMSRecForRecommendation, SASRecModel

ORACLE_FEATURES = ("teacher", "bag")


def left_align_to_right(slot_item_ids: torch.LongTensor) -> torch.LongTensor:
    """Move each row's non-zero ids (kept in order) to the right end: SASRec reads left-padded sequences."""
    order = torch.argsort((slot_item_ids > 0).int(), dim=-1, stable=True)
    return slot_item_ids.gather(-1, order)


class TeacherOracle:
    """``(slot_item_ids, kind) -> states``: the teacher's vectors for the items a prompt carries.

    Args:
        teacher: the frozen SASRec teacher (the model's own ``sasrec``).
        features: ``"teacher"`` (h_U = O_u of the shown history) or ``"bag"`` (h_U = mean of its E_i).
    """

    def __init__(self, teacher: SASRecModel, features: str = "teacher") -> None:
        if features not in ORACLE_FEATURES:
            raise ValueError(f"oracle features must be one of {ORACLE_FEATURES}, got {features!r}")
        self.teacher = teacher
        self.features = features

    @torch.no_grad()
    def __call__(self, slot_item_ids: torch.LongTensor, kind: str) -> torch.Tensor:
        device = self.teacher.item_embeddings.device
        slot_item_ids = slot_item_ids.to(device)
        table = self.teacher.item_embeddings
        if kind == "item":
            return table[slot_item_ids[:, 0]]
        if self.features == "teacher":
            return self.teacher.encode_users(left_align_to_right(slot_item_ids))
        present = (slot_item_ids > 0).unsqueeze(-1).to(table.dtype)
        return (table[slot_item_ids] * present).sum(1) / present.sum(1).clamp(min=1)


def attach_oracle(model: LLMSRecForRecommendation, features: str = "teacher") -> LLMSRecForRecommendation:
    """Replace ``model``'s backbone states by oracle features (in place; returns the model).

    The heads read the backbone's hidden size, so the model must be built on a backbone whose hidden size equals
    the teacher's (e.g. `llm_srec.build_tiny_backbone(..., hidden_size=teacher hidden size)`).
    """
    teacher_size = model.sasrec.config.hidden_size
    head_input = model.user_head[0].in_features
    if head_input != teacher_size:
        raise ValueError(
            f"the oracle hands the heads {teacher_size}-dim teacher vectors, but they read {head_input}-dim backbone "
            f"states: build the model on a backbone of hidden size {teacher_size}"
        )
    model.state_override = TeacherOracle(model.sasrec, features)
    model._item_index = None
    return model


def detach_oracle(model: LLMSRecForRecommendation) -> LLMSRecForRecommendation:
    """Run the backbone again (in place; returns the model)."""
    model.state_override = None
    model._item_index = None
    return model


__all__ = ["ORACLE_FEATURES", "TeacherOracle", "attach_oracle", "detach_oracle", "left_align_to_right"]
