"""SASRec, the collaborative-filtering teacher of LLM-SRec (PAPER.md §4.2), as a transformers `PreTrainedModel`.

pmixer-style architecture, written from the paper's description: item embeddings scaled by sqrt(d), learned
absolute positions over a left-padded window (the newest item always sits at the last position), embedding
dropout, padded positions zeroed, pre-LN causal self-attention blocks with a point-wise feed-forward, and a final
LayerNorm. The user representation O_u is the final-LayerNorm output at the last position.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_sasrec import SASRecConfig
from .saving_llm_srec import ModelCardPushMixin, check_model_folder, staged_model_folder


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


def _dropout(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout. On CPU the keep mask comes from ``torch.rand``, ~2.5x faster than the ``bernoulli_`` behind
    `F.dropout` (same distribution, same seeded generator); other devices use `F.dropout`'s fused kernel."""
    if not training or p == 0.0:
        return hidden_states
    if hidden_states.device.type != "cpu":
        return F.dropout(hidden_states, p, training=True)
    return hidden_states * torch.rand_like(hidden_states).ge_(p).mul_(1.0 / (1.0 - p))


class SASRecPointWiseFeedForward(nn.Module):
    """Two position-wise linear maps (the original's kernel-1 Conv1d) with ReLU, dropout and a residual."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_in = nn.Dropout(config.hidden_dropout_prob)
        self.dropout_out = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        p, training = self.dropout_in.p, self.training
        outputs = torch.relu(_dropout(self.dense_in(hidden_states), p, training))
        return _dropout(self.dense_out(outputs), self.dropout_out.p, training) + hidden_states


def _split_heads(hidden_states: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, heads * d_head) -> (B * heads, L, d_head)``, for `torch.bmm`."""
    batch, length, width = hidden_states.shape
    head_size = width // heads
    hidden_states = hidden_states.reshape(batch, length, heads, head_size).transpose(1, 2)
    return hidden_states.reshape(batch * heads, length, head_size)


def _merge_heads(hidden_states: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of `_split_heads`."""
    groups, length, head_size = hidden_states.shape
    hidden_states = hidden_states.reshape(groups // heads, heads, length, head_size).transpose(1, 2)
    return hidden_states.reshape(groups // heads, length, heads * head_size)


# Rows per attention group: a group's queries start at its earliest non-padded position (see `SASRecBlock.attend`).
_QUERY_GROUP_SIZE = 16


class SASRecBlock(nn.Module):
    """Pre-LN block: ``Q = LN(x); x = Q + Attn(Q, x, x); x = FFN(LN(x))`` with padded positions zeroed.

    ``attention`` is an `nn.MultiheadAttention` that holds the weights (checkpoint names ``in_proj_weight``,
    ``in_proj_bias``, ``out_proj.*``); `attend` computes the same causal attention but only for non-padded queries,
    with one fused key/value projection and the attention dropout drawn by `_dropout`.
    """

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

    def attend(
        self, queries: torch.Tensor, keys: torch.Tensor, causal_mask: torch.Tensor, query_starts: list[int]
    ) -> torch.Tensor:
        """Causal multi-head attention of ``queries`` over ``keys`` (= values), the rows taken in groups of
        `_QUERY_GROUP_SIZE`; group ``g`` computes only its queries from ``query_starts[g]`` on (the others are
        padding, zeroed by the caller) against every key. ``causal_mask`` is additive (``-inf`` above the diagonal)."""
        attention = self.attention
        width = queries.shape[-1]
        heads = attention.num_heads
        head_size = width // heads
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        query = F.linear(queries, weight[:width], bias[:width]) * head_size**-0.5
        key, value = F.linear(keys, weight[width:], bias[width:]).chunk(2, dim=-1)
        p = attention.dropout
        outputs = []
        for start, q, k, v in zip(
            query_starts, *(tensor.split(_QUERY_GROUP_SIZE) for tensor in (query, key, value)), strict=True
        ):
            q, k, v = (_split_heads(tensor, heads) for tensor in (q[:, start:], k, v))
            scores = torch.baddbmm(causal_mask[start:], q, k.transpose(1, 2))
            output = torch.bmm(_dropout(torch.softmax(scores, dim=-1), p, self.training), v)
            outputs.append(F.pad(_merge_heads(output, heads), (0, 0, start, 0)))
        return F.linear(torch.cat(outputs), attention.out_proj.weight, attention.out_proj.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        causal_mask: torch.Tensor,
        keep_mask: torch.Tensor,
        query_starts: list[int],
    ) -> torch.Tensor:
        queries = self.attention_layer_norm(hidden_states)
        attended = self.attend(queries, hidden_states, causal_mask, query_starts)
        hidden_states = self.feed_forward(self.feed_forward_layer_norm(queries + attended))
        return hidden_states * keep_mask


class SASRecPreTrainedModel(ModelCardPushMixin, PreTrainedModel):
    """Weight initialisation and config binding shared by SASRec models (xavier-normal on every >=2-D weight)."""

    config_class = SASRecConfig
    config: SASRecConfig
    base_model_prefix = "sasrec"
    main_input_name = "input_ids"
    _auto_class = "AutoModel"
    # transformers' save_pretrained arguments; the others of a push_to_hub=True save go to push_to_hub
    _SAVE_OPTIONS = ("max_shard_size", "variant", "token", "save_peft_format", "save_original_format",
                     "distributed_checkpoint", "safe_serialization")

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """transformers' `save_pretrained`, made atomic (`staged_model_folder`): the folder is written next to
        ``save_directory`` and renamed into place, so an interrupted save leaves the previous folder intact. With
        ``push_to_hub=True`` the saved folder is then uploaded with our model card (``repo_id`` and the other
        kwargs go to `push_to_hub`)."""
        save = {key: kwargs.pop(key) for key in self._SAVE_OPTIONS if key in kwargs}
        save.pop("safe_serialization", None)  # always safetensors
        if not is_main_process:
            super().save_pretrained(save_directory, is_main_process=False, state_dict=state_dict, **save)
            return
        with staged_model_folder(save_directory) as staging:
            super().save_pretrained(staging, state_dict=state_dict, **save)
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(os.fspath(save_directory))))
            if "token" in save:
                kwargs.setdefault("token", save["token"])
            self.push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any, **kwargs: Any):
        """transformers' `from_pretrained`, after checking that a local folder is complete: a missing config.json or
        weights file raises FileNotFoundError naming it, a truncated or corrupt one a one-line ValueError."""
        if pretrained_model_name_or_path is not None and not any(
            kwargs.get(key) is not None for key in ("variant", "state_dict", "gguf_file")
        ):
            folder = os.fspath(pretrained_model_name_or_path)
            if kwargs.get("subfolder"):
                folder = os.path.join(folder, kwargs["subfolder"])
            if os.path.isdir(folder):
                check_model_folder(folder, require_config=kwargs.get("config") is None)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

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


# Logits per block of `_CatalogCrossEntropy`: 2 MiB of fp32 on CPU (a block stays in L2), 256 MiB elsewhere.
_CE_CHUNK_ELEMENTS_CPU = 2**19
_CE_CHUNK_ELEMENTS = 2**26


class _CatalogCrossEntropy(torch.autograd.Function):
    """Mean full-softmax cross-entropy of ``states @ table[1:].T`` (row 0, padding, is no class) against ``targets``.

    Equal to ``F.cross_entropy(states @ table.T with column 0 at -inf, targets)``, computed as a fused linear
    cross-entropy: the ``(N, num_items)`` logits, the step's largest tensor, are formed a block of rows at a time
    that stays in cache, turned into ``softmax - onehot`` in place and immediately multiplied back into the gradients
    of ``states`` and ``table``, which the forward keeps when ``needs_grad``. No logits, log-probabilities or their
    gradient are ever stored whole. Runs in the inputs' precision with autocast off; the loss is summed in fp32 or
    wider.
    """

    @staticmethod
    def forward(
        ctx: Any, states: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, needs_grad: bool
    ) -> torch.Tensor:
        ctx.dtypes, ctx.count = (states.dtype, table.dtype), states.shape[0]
        with torch.autocast(states.device.type, enabled=False):
            dtype = torch.promote_types(states.dtype, table.dtype)
            accumulate = torch.promote_types(dtype, torch.float32)
            states, classes = states.to(dtype), table[1:].to(dtype)
            grad_states = torch.empty_like(states) if needs_grad else None
            grad_classes = torch.zeros_like(classes) if needs_grad else None
            elements = _CE_CHUNK_ELEMENTS_CPU if states.device.type == "cpu" else _CE_CHUNK_ELEMENTS
            chunk = max(32, elements // classes.shape[0])
            total = states.new_zeros((), dtype=accumulate)
            for start in range(0, states.shape[0], chunk):
                block, labels = states[start : start + chunk], targets[start : start + chunk] - 1
                logits = block @ classes.t()
                log_normalizer = torch.logsumexp(logits.to(accumulate), dim=-1)
                total += (log_normalizer - logits.gather(1, labels[:, None]).squeeze(1).to(accumulate)).sum()
                if needs_grad:
                    probs = logits.sub_(log_normalizer[:, None].to(dtype)).exp_()
                    probs[torch.arange(labels.shape[0], device=labels.device), labels] -= 1
                    torch.mm(probs, classes, out=grad_states[start : start + chunk])
                    grad_classes.addmm_(probs.t(), block)
        if needs_grad:
            ctx.save_for_backward(grad_states, grad_classes)
        return total / ctx.count

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        grad_states, grad_classes = ctx.saved_tensors
        scale = grad_output / ctx.count
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = F.pad(grad_classes * scale, (0, 0, 1, 0)).to(ctx.dtypes[1])
        grad_states = (grad_states * scale).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        return grad_states, grad_table, None, None


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
        """Run the blocks over a full ``(B, maxlen)`` window and return the final-LayerNorm states.

        The rows run sorted by their first non-padded position, so that the attention groups (`SASRecBlock.attend`)
        skip as many padded queries as possible; the states come back in the input's order.
        """
        length = input_ids.shape[1]
        keep = input_ids != 0
        first = torch.where(keep.any(1), keep.int().argmax(1), length)
        first, order = torch.sort(first, stable=True)
        input_ids, keep = input_ids[order], keep[order]
        query_starts = first[::_QUERY_GROUP_SIZE].tolist() or [length]  # an empty batch still splits into one group
        keep_mask = keep.unsqueeze(-1).to(self.item_embedding.weight.dtype)
        hidden_states = self.item_embedding(input_ids) * math.sqrt(self.config.hidden_size)
        positions = torch.arange(length, device=input_ids.device)
        hidden_states = _dropout(
            hidden_states + self.position_embedding(positions), self.embedding_dropout.p, self.training
        )
        hidden_states = hidden_states * keep_mask
        causal_mask = torch.full(
            (length, length), float("-inf"), dtype=hidden_states.dtype, device=input_ids.device
        ).triu(1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, causal_mask, keep_mask, query_starts)
        return self.final_layer_norm(hidden_states)[torch.argsort(order)]

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
            states = hidden_states[target_mask]
            needs_grad = torch.is_grad_enabled() and (states.requires_grad or table.requires_grad)
            return _CatalogCrossEntropy.apply(states, table, positive_ids[target_mask], needs_grad)
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
