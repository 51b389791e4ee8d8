"""SASRec, the collaborative-filtering teacher of LLM-SRec (PAPER.md §4.2), as a transformers `PreTrainedModel`.

pmixer-style architecture, written from the paper's description: item embeddings scaled by sqrt(d), learned
absolute positions over a left-padded window (the newest item always sits at the last position), embedding
dropout, padded positions zeroed, pre-LN causal self-attention blocks with a point-wise feed-forward, and a final
LayerNorm. The user representation O_u is the final-LayerNorm output at the last position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_sasrec import SASRecConfig


@dataclass
class SASRecOutput(ModelOutput):
    """Output of `SASRecModel.forward`.

    Args:
        loss: pre-training loss (BCE with one negative per position, or full-catalog CE), when targets are given.
        last_hidden_state: final-LayerNorm states of the (at most ``maxlen``) most recent positions, ``(B, L, d)``.
        user_embeddings: O_u, the state at the last position, ``(B, d)``.
    """

    loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None


class SASRecPointWiseFeedForward(nn.Module):
    """Two position-wise linear maps (the original's kernel-1 Conv1d) with ReLU, dropout and a residual."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_in = nn.Dropout(config.hidden_dropout_prob)
        self.dropout_out = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        outputs = self.dropout_out(self.dense_out(torch.relu(self.dropout_in(self.dense_in(hidden_states)))))
        return outputs + hidden_states


class SASRecBlock(nn.Module):
    """Pre-LN block: ``Q = LN(x); x = Q + Attn(Q, x, x); x = FFN(LN(x))`` with padded positions zeroed."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = nn.MultiheadAttention(
            config.hidden_size,
            config.num_attention_heads,
            dropout=config.attention_probs_dropout_prob,
            batch_first=True,
        )
        self.feed_forward_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = SASRecPointWiseFeedForward(config)

    def forward(
        self, hidden_states: torch.Tensor, causal_mask: torch.Tensor, keep_mask: torch.Tensor
    ) -> torch.Tensor:
        queries = self.attention_layer_norm(hidden_states)
        attended, _ = self.attention(
            queries, hidden_states, hidden_states, attn_mask=causal_mask, need_weights=False
        )
        hidden_states = self.feed_forward(self.feed_forward_layer_norm(queries + attended))
        return hidden_states * keep_mask


class ModelCardPushMixin:
    """`push_to_hub` that uploads our model card (hub_cards/) instead of transformers' generic one.

    The card renderer lives in the `llm_srec` package; remote-code users without it get transformers' push.
    """

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        try:
            from llm_srec.hub import push_model_to_hub
        except ImportError:
            return super().push_to_hub(repo_id, **kwargs)
        return push_model_to_hub(self, repo_id, **kwargs)


class SASRecPreTrainedModel(ModelCardPushMixin, PreTrainedModel):
    """Weight initialisation and config binding shared by SASRec models (xavier-normal on every >=2-D weight)."""

    config_class = SASRecConfig
    config: SASRecConfig
    base_model_prefix = "sasrec"
    main_input_name = "input_ids"
    _auto_class = "AutoModel"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            init.xavier_normal_(module.weight)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Linear):
            init.xavier_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            init.xavier_normal_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class SASRecModel(SASRecPreTrainedModel):
    """SASRec: a left-padded item-id sequence in, the user representation O_u and item scores out.

    Internal item ids are ``1..num_items``; ``0`` is padding. Inputs shorter than ``maxlen`` are left-padded
    internally and longer inputs keep their ``maxlen`` most recent items, so a user's representation never depends
    on how much padding the batch carried.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__(config)
        if config.num_items is None:
            raise ValueError("SASRecConfig.num_items must be set to build a SASRecModel.")
        self.item_embedding = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([SASRecBlock(config) for _ in range(config.num_hidden_layers)])
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_embedding = value

    @property
    def item_embeddings(self) -> torch.Tensor:
        """The item table E, ``(num_items + 1, d)``; row 0 is padding (used unscaled by LLM-SRec's f_I)."""
        return self.item_embedding.weight

    def check_item_ids(self, item_ids: torch.Tensor, name: str = "item ids") -> None:
        """Raise a ValueError naming the offending values when ids fall outside ``0..num_items``."""
        num_items = self.config.num_items
        bad = (item_ids < 0) | (item_ids > num_items)
        if bool(bad.any()):
            values = sorted(set(item_ids[bad].tolist()))[:10]
            raise ValueError(
                f"Unknown {name} {values}: internal item ids must lie in 1..{num_items} (0 is padding)."
            )

    def _window(self, ids: torch.Tensor) -> torch.Tensor:
        """Keep the ``maxlen`` most recent positions and left-pad shorter rows to exactly ``maxlen``."""
        maxlen = self.config.max_position_embeddings
        if ids.dim() != 2:
            raise ValueError(f"SASRec expects (batch, length) item-id tensors, got shape {tuple(ids.shape)}.")
        ids = ids[:, -maxlen:]
        if ids.shape[1] < maxlen:
            ids = F.pad(ids, (maxlen - ids.shape[1], 0), value=0)
        return ids

    def _encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Run the blocks over a full ``(B, maxlen)`` window and return the final-LayerNorm states."""
        keep_mask = (input_ids != 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)
        hidden_states = self.item_embedding(input_ids) * math.sqrt(self.config.hidden_size)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden_states = self.embedding_dropout(hidden_states + self.position_embedding(positions))
        hidden_states = hidden_states * keep_mask
        length = input_ids.shape[1]
        causal_mask = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).triu(1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, causal_mask, keep_mask)
        return self.final_layer_norm(hidden_states)

    def forward(
        self,
        input_ids: torch.LongTensor,
        positive_ids: torch.LongTensor | None = None,
        negative_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> SASRecOutput | tuple:
        """Encode left-padded sequences and, given next-item targets, compute the pre-training loss.

        Args:
            input_ids: ``(B, L)`` left-padded internal item ids.
            positive_ids: ``(B, L)`` next item at every position (0 where there is none).
            negative_ids: ``(B, L)`` one sampled negative per position; required by ``loss_type="bce"``.
            labels: alias of ``positive_ids`` for `Trainer` (which passes targets as ``labels``).
            return_dict: return a tuple when False.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if positive_ids is None:
            positive_ids = labels
        elif labels is not None and not torch.equal(labels, positive_ids):
            raise ValueError("Pass next-item targets either as positive_ids or as labels, not two different ones.")
        self.check_item_ids(input_ids, "input item ids")
        length = min(input_ids.shape[-1], self.config.max_position_embeddings)
        hidden_states = self._encode(self._window(input_ids))
        user_embeddings = hidden_states[:, -1]
        loss = None
        if positive_ids is not None:
            if positive_ids.shape != input_ids.shape:
                raise ValueError(
                    f"positive_ids shape {tuple(positive_ids.shape)} must match input_ids {tuple(input_ids.shape)}."
                )
            self.check_item_ids(positive_ids, "positive item ids")
            loss = self._loss(hidden_states, self._window(positive_ids), negative_ids, input_ids.shape)
        output = SASRecOutput(
            loss=loss, last_hidden_state=hidden_states[:, -length:], user_embeddings=user_embeddings
        )
        return output if return_dict else output.to_tuple()

    def _loss(
        self,
        hidden_states: torch.Tensor,
        positive_ids: torch.Tensor,
        negative_ids: torch.Tensor | None,
        input_shape: torch.Size,
    ) -> torch.Tensor:
        target_mask = positive_ids != 0
        if not bool(target_mask.any()):
            raise ValueError("positive_ids holds no target (all zeros): nothing to train on.")
        table = self.item_embedding.weight
        if self.config.loss_type == "ce":
            logits = hidden_states[target_mask] @ table.t()
            logits[:, 0] = torch.finfo(logits.dtype).min
            return F.cross_entropy(logits, positive_ids[target_mask])
        if negative_ids is None:
            raise ValueError('loss_type="bce" needs negative_ids (one sampled negative per position).')
        if negative_ids.shape != input_shape:
            raise ValueError(
                f"negative_ids shape {tuple(negative_ids.shape)} must match input_ids {tuple(input_shape)}."
            )
        self.check_item_ids(negative_ids, "negative item ids")
        negative_ids = self._window(negative_ids)
        states = hidden_states[target_mask]
        positive_logits = (states * table[positive_ids[target_mask]]).sum(-1)
        negative_logits = (states * table[negative_ids[target_mask]]).sum(-1)
        return F.binary_cross_entropy_with_logits(
            positive_logits, torch.ones_like(positive_logits)
        ) + F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits))

    def encode_users(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """O_u for each left-padded sequence, ``(B, d)``: the final-LayerNorm state at the newest position."""
        self.check_item_ids(input_ids, "input item ids")
        return self._encode(self._window(input_ids))[:, -1]

    def score(self, input_ids: torch.LongTensor, item_ids: torch.LongTensor | None = None) -> torch.Tensor:
        """Dot-product scores ``O_u · E_i``.

        Args:
            input_ids: ``(B, L)`` left-padded histories.
            item_ids: ``(B, C)`` candidates per user, ``(C,)`` candidates shared by the batch, or None for the whole
                catalog, which returns ``(B, num_items + 1)`` with column 0 (padding) set to ``-inf``.
        """
        users = self.encode_users(input_ids)
        table = self.item_embedding.weight
        if item_ids is None:
            scores = users @ table.t()
            scores[:, 0] = float("-inf")
            return scores
        self.check_item_ids(item_ids, "candidate item ids")
        if item_ids.dim() == 1:
            return users @ table[item_ids].t()
        if item_ids.dim() != 2 or item_ids.shape[0] != users.shape[0]:
            raise ValueError(
                f"item_ids must be (C,) or (B={users.shape[0]}, C), got shape {tuple(item_ids.shape)}."
            )
        return torch.einsum("bd,bcd->bc", users, table[item_ids])


__all__ = ["SASRecOutput", "SASRecPreTrainedModel", "SASRecModel"]
