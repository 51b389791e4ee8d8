"""Item-prompt prefix cache: the key/value states of the fixed text before an item prompt's ``[HistoryEmb]`` slot.

Why: in an item prompt every token before the slot (the template's opening words and the title) is fixed text that
no trainable parameter touches. In a causal backbone without an adapter, the keys and values of those tokens depend
on them alone, so they are computed once per distinct prefix and reused by every later training step, validation and
catalog encoding. Only the slot, ``[ItemOut]`` and the few template tokens between them then run through the backbone.
The result is the full forward's, up to float rounding (``tests/test_prefix_cache.py``).

Exactness needs: a causal backbone (a bidirectional encoder's prefix states depend on the slot, so BERT-like models
run the full forward), no adapter (LoRA changes the prefix states), and no active dropout while training and no
gradient checkpointing (which drops a passed cache). `prefix_cache_unsupported_reason` names the permanent reasons;
the model checks the per-call ones.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

PrefixStates = tuple[torch.Tensor, ...]  # one (2, kv_heads, prefix_length, head_dim) tensor per layer
_DROPOUT_ATTRIBUTES = ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop")


def cache_argument(backbone: nn.Module) -> str | None:
    """The name under which the backbone's forward takes a key/value cache (``cache`` in transformers >= 5.2x)."""
    parameters = inspect.signature(backbone.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def prefix_cache_unsupported_reason(backbone: nn.Module) -> str | None:
    """Why the backbone can never reuse prefix states (None when it can): not a causal decoder, or no cache input."""
    config = backbone.config
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        return f"{model_type} is an encoder-decoder model"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"{model_type} is not a causal decoder (its prefix states depend on the later tokens)"
    if cache_argument(backbone) is None:
        return f"{type(backbone).__name__}.forward takes no key/value cache"
    return None


def has_dropout(backbone: nn.Module) -> bool:
    """Whether the backbone applies any dropout in training mode (modules or attention-probability dropout)."""
    if any(isinstance(module, nn.Dropout) and module.p > 0 for module in backbone.modules()):
        return True
    return any(float(getattr(backbone.config, name, 0.0) or 0.0) > 0 for name in _DROPOUT_ATTRIBUTES)


def split_item_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_token_id: int
) -> tuple[list[tuple[int, ...]], list[list[int]]]:
    """Each prompt's real tokens (whatever the padding side) split before its first slot: (prefixes, suffixes)."""
    prefixes, suffixes = [], []
    for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist()):
        real = [token for token, keep in zip(ids, mask) if keep]
        slot = real.index(slot_token_id)
        prefixes.append(tuple(real[:slot]))
        suffixes.append(real[slot:])
    return prefixes, suffixes


class ItemPrefixCache:
    """LRU map from prefix token ids to their per-layer key/value states, bounded in bytes.

    Args:
        max_bytes: memory bound; the least recently used prefixes are dropped beyond it (an entry larger than the
            bound is computed but not kept).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple[int, ...], PrefixStates] = OrderedDict()
        self._signature: tuple[str, str] | None = None
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (e.g. after changing the backbone's weights in place)."""
        self._entries.clear()
        self.nbytes = 0

    def _store(self, key: tuple[int, ...], states: PrefixStates) -> None:
        size = sum(tensor.numel() * tensor.element_size() for tensor in states)
        if size > self.max_bytes:
            return
        self._entries[key] = states
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.nbytes -= sum(tensor.numel() * tensor.element_size() for tensor in dropped)

    def states(
        self,
        backbone: nn.Module,
        prefixes: Sequence[tuple[int, ...]],
        embedding: nn.Module,
        pad_id: int,
    ) -> list[PrefixStates]:
        """Per prefix, its states: cached ones are reused, the missing ones are computed in one no-grad forward.

        ``embedding`` is the backbone's input embedding (the prefixes hold no special token). The missing prefixes
        are right-padded: in a causal model a real token never attends to the padding after it, so each row's states
        over its real tokens are exact.
        """
        weight = embedding.weight
        signature = (str(weight.device), str(weight.dtype))
        if signature != self._signature:
            self.clear()
            self._signature = signature
        found: dict[tuple[int, ...], PrefixStates] = {}
        for prefix in prefixes:
            if prefix in self._entries:
                self._entries.move_to_end(prefix)
                found[prefix] = self._entries[prefix]
        missing = list(dict.fromkeys(prefix for prefix in prefixes if prefix not in found))
        self.hits += sum(prefix in found for prefix in prefixes)
        self.misses += len(missing)
        if missing:
            found.update(zip(missing, self._compute(backbone, missing, embedding, pad_id)))
            for prefix in missing:
                self._store(prefix, found[prefix])
        return [found[prefix] for prefix in prefixes]

    @staticmethod
    @torch.no_grad()
    def _compute(
        backbone: nn.Module,
        prefixes: list[tuple[int, ...]],
        embedding: nn.Module,
        pad_id: int,
    ) -> list[PrefixStates]:
        device = embedding.weight.device
        width = max(len(prefix) for prefix in prefixes)
        input_ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long, device=device)
        attention_mask = torch.zeros_like(input_ids)
        for row, prefix in enumerate(prefixes):
            input_ids[row, : len(prefix)] = torch.as_tensor(prefix, device=device)
            attention_mask[row, : len(prefix)] = 1
        cache = DynamicCache()
        backbone(
            inputs_embeds=embedding(input_ids), attention_mask=attention_mask, use_cache=True,
            **{cache_argument(backbone): cache},
        )
        layers = [torch.stack((keys, values), dim=1) for keys, values, *_ in cache]  # (B, 2, heads, width, dim)
        return [
            tuple(layer[row, :, :, : len(prefix)].clone() for layer in layers) for row, prefix in enumerate(prefixes)
        ]


def stack_prefix_states(entries: Sequence[PrefixStates]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """A batch cache of the entries, left-padded to the longest prefix, with its ``(B, P)`` attention mask and
    each row's prefix length (the position of its first suffix token)."""
    lengths = [entry[0].shape[2] for entry in entries]
    width = max(lengths)
    layers = []
    for layer in range(len(entries[0])):
        stacked = torch.stack([F.pad(entry[layer], (0, 0, width - length, 0)) for entry, length in zip(entries, lengths)])
        layers.append((stacked[:, 0], stacked[:, 1]))
    device = entries[0][0].device
    lengths_tensor = torch.as_tensor(lengths, device=device)
    mask = (torch.arange(width, device=device).unsqueeze(0) >= (width - lengths_tensor).unsqueeze(1)).long()
    return DynamicCache(ddp_cache_data=layers), mask, lengths_tensor


__all__ = [
    "ItemPrefixCache",
    "cache_argument",
    "has_dropout",
    "prefix_cache_unsupported_reason",
    "split_item_prompts",
    "stack_prefix_states",
]
