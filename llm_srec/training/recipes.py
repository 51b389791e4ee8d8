"""Named training recipes: the loss and training choices of an LLM-SRec run, as config and argument overrides.

Why named: ``paper`` must stay reproducible exactly while the package default may differ where it is measured better
(BENCHMARKS.md, "Recipes"); a run records the recipe it used in ``LLMSRecConfig.recipe`` and on its model card.

- ``paper``: the paper and the official code (PAPER.md §2.4-2.5, §9): L_Retrieval + L_Distill + L_Uniform with weights
  1/1/1, raw dot products, 1 + 3 candidates per user, the last item of each training sequence, Adam lr 1e-4, batch
  20. Two known deviations from the code, both kept: the teacher runs in eval mode (the code leaves SASRec in train
  mode, so its O_u carries dropout noise), and the HF Trainer clips gradients at norm 1.0 (the code does not clip).
- ``transfer``: the paper's losses plus what makes the student keep the teacher's ranking: listwise score
  distillation against SASRec's own scores O_u . E_i, in-batch negatives (every candidate of the batch), cosine
  scores with temperature 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when used: the command line reads the recipe names without loading torch
    from llm_srec.modeling import LLMSRecConfig

    from .arguments import LLMSRecTrainingArguments


@dataclass(frozen=True)
class Recipe:
    """A named set of `LLMSRecConfig` options (``config``) and `LLMSRecTrainingArguments` options (``training``)."""

    name: str
    summary: str
    config: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)

    def config_kwargs(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`LLMSRecConfig` keyword arguments: the recipe's, its name, then ``overrides`` (which win)."""
        return {**self.config, "recipe": self.name, **dict(overrides or {})}

    def training_arguments(self, **kwargs: Any) -> LLMSRecTrainingArguments:
        """`LLMSRecTrainingArguments` with the recipe's options, then ``kwargs`` (which win)."""
        from .arguments import LLMSRecTrainingArguments

        return LLMSRecTrainingArguments(**{**self.training, **kwargs})


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        summary="the paper / official code: L_Retrieval + L_Distill + L_Uniform (1/1/1), dot products, 1+3 "
        "candidates, last item per user, Adam lr 1e-4, batch 20",
    ),
    "transfer": Recipe(
        name="transfer",
        summary="paper losses + listwise score distillation from SASRec (O_u . E_i), in-batch negatives, cosine "
        "scores with temperature 0.1",
        config={
            "score_distillation_loss_weight": 1.0,
            "in_batch_negatives": True,
            "similarity": "cosine",
            "retrieval_temperature": 0.1,
        },
    ),
}
# The package default: it ranks better than `paper` on held-out users in every measured setting (BENCHMARKS.md,
# "Recipes"); `paper` stays one argument away.
DEFAULT_RECIPE = "transfer"


# The paper's ablations (Table 8 rows (a), (b); Table 12) as `LLMSRecConfig` overrides: no model code changes.
ABLATIONS: dict[str, dict[str, Any]] = {
    # No teacher signal at all: also without the score and item distillation of recipes that add them.
    "no_distillation_uniformity": {"distillation_loss_weight": 0.0, "uniformity_loss_weight": 0.0,
                                   "score_distillation_loss_weight": 0.0, "item_distillation_loss_weight": 0.0},
    "no_uniformity": {"uniformity_loss_weight": 0.0},
    "contrastive_distillation": {"distillation_loss": "contrastive"},
}
ABLATION_LABELS: dict[str, str] = {
    "no_distillation_uniformity": "w/o L_Distill, L_Uniform",
    "no_uniformity": "w/o L_Uniform",
    "contrastive_distillation": "contrastive distillation",
}


def ablation_config_overrides(name: str) -> dict[str, Any]:
    """`LLMSRecConfig` keyword overrides of a named ablation (a copy), e.g. ``"no_uniformity"``."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose from {sorted(ABLATIONS)}")
    return dict(ABLATIONS[name])


def ablation_name(config: LLMSRecConfig) -> str | None:
    """The ablation a config implements (None for the full method), so a probed ablated model is labelled as such."""
    for name, overrides in ABLATIONS.items():  # most specific first: every switch of the ablation is set
        if all(getattr(config, key) == value for key, value in overrides.items()):
            return name
    return None


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ValueError lists the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    return RECIPES[name]


__all__ = [
    "ABLATIONS", "ABLATION_LABELS", "DEFAULT_RECIPE", "RECIPES", "Recipe", "ablation_config_overrides", "ablation_name",
    "get_recipe",
]
