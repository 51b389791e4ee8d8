"""Configuration of the SASRec teacher (CF-SRec) used by LLM-SRec.

Self-contained (torch/transformers/stdlib only) so that it also works as Hub remote code.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import PreTrainedConfig

from .saving_llm_srec import read_json

SASREC_LOSS_TYPES = ("bce", "ce")


def config_dict_from_json_file(cls: type[PreTrainedConfig], json_file: str | os.PathLike) -> dict[str, Any]:
    """`PreTrainedConfig._dict_from_json_file` through `read_json`: transformers reports a broken config as an
    OSError without line or column; this makes it the same ValueError as every other JSON file of a folder."""
    return cls._decode_special_floats(read_json(json_file))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"SASRecConfig.{name} must be a positive integer, got {value!r}.")


def _check_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"SASRecConfig.{name} must be a number in [0, 1), got {value!r}.")


class SASRecConfig(PreTrainedConfig):
    """Hyper-parameters of SASRec (Kang & McAuley 2018) in the pmixer form used by LLM-SRec (PAPER.md §4).

    The defaults are the LLM-SRec code's: d=64, 2 blocks, 1 head, maxlen 128, dropout 0.1.

    Args:
        num_items: number of real items; internal ids are ``1..num_items`` and ``0`` is padding, so the item table
            has ``num_items + 1`` rows. ``None`` is only allowed for an unset placeholder config; a model needs it.
        hidden_size: embedding / hidden width d.
        num_hidden_layers: number of self-attention blocks.
        num_attention_heads: attention heads per block (must divide ``hidden_size``).
        max_position_embeddings: the window length (``maxlen``); longer inputs keep their most recent items.
        hidden_dropout_prob: dropout on the embeddings and inside the point-wise feed-forward.
        attention_probs_dropout_prob: dropout on the attention weights.
        layer_norm_eps: epsilon of every LayerNorm (1e-8 as the original code).
        loss_type: ``"bce"`` (one sampled negative per position, the paper) or ``"ce"`` (full-softmax cross-entropy
            over the whole catalog).
        catalog_fingerprint: `ItemCatalog.fingerprint` of the catalog the model was trained on (set by
            `pretrain_sasrec`), so a folder is never silently evaluated on another catalog of the same size.
    """

    model_type = "sasrec"
    _auto_class = "AutoConfig"
    _dict_from_json_file = classmethod(config_dict_from_json_file)

    def __init__(
        self,
        num_items: int | None = None,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 1,
        max_position_embeddings: int = 128,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-8,
        loss_type: str = "bce",
        catalog_fingerprint: str | None = None,
        **kwargs: Any,
    ) -> None:
        if num_items is not None:
            _check_positive_int("num_items", num_items)
        for name, value in (
            ("hidden_size", hidden_size),
            ("num_hidden_layers", num_hidden_layers),
            ("num_attention_heads", num_attention_heads),
            ("max_position_embeddings", max_position_embeddings),
        ):
            _check_positive_int(name, value)
        if hidden_size % num_attention_heads != 0:
            raise ValueError(
                f"SASRecConfig.hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                f"({num_attention_heads})."
            )
        _check_probability("hidden_dropout_prob", hidden_dropout_prob)
        _check_probability("attention_probs_dropout_prob", attention_probs_dropout_prob)
        if not isinstance(layer_norm_eps, (int, float)) or layer_norm_eps <= 0:
            raise ValueError(f"SASRecConfig.layer_norm_eps must be a positive number, got {layer_norm_eps!r}.")
        if loss_type not in SASREC_LOSS_TYPES:
            raise ValueError(f"SASRecConfig.loss_type must be one of {SASREC_LOSS_TYPES}, got {loss_type!r}.")
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_probs_dropout_prob = float(attention_probs_dropout_prob)
        self.layer_norm_eps = float(layer_norm_eps)
        self.loss_type = loss_type
        self.catalog_fingerprint = catalog_fingerprint
        super().__init__(**kwargs)


__all__ = ["SASRecConfig"]
