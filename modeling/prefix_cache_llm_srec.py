"""Item-prompt prefix cache: the key/value states of the fixed text before an item prompt's ``[HistoryEmb]`` slot.

Why: in an item prompt every token before the slot (the template's opening words and the title) is fixed text that
no trainable parameter touches. In a causal backbone without an adapter, the keys and values of those tokens depend
on them alone, so they are computed once per distinct prefix and reused by every later training step, validation and
catalog encoding. Only the slot, ``[ItemOut]`` and the few template tokens between them then run through the backbone.
The result is the full forward's, up to float rounding (``tests/test_prefix_cache.py``).

Exactness needs: a causal backbone (a bidirectional encoder's prefix states depend on the slot, so BERT-like models
run the full forward), no adapter (LoRA changes the prefix states), and no active dropout while training and no
gradient checkpointing (which drops a passed cache). `prefix_cache_unsupported_reason` names the permanent reasons;
the model checks the per-call ones. A prompt whose prefix is not cached yet runs the full forward, and its prefix
states are kept from that same forward (`ItemPrefixCache.harvest`), so a cold cache costs no extra backbone work.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

logger = logging.getLogger(__name__)

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
    """Map from prefix token ids to their per-layer key/value states, bounded in bytes.

    Why entries are never evicted: validation and catalog encoding scan the whole catalog in the same order, and
    under a least-recently-used rule a catalog larger than the bound would evict every prefix just before its next
    use (no hit at all). Once full, the cache keeps what it holds, so a scan still hits for that share of the
    catalog; the first time it is full it logs how much memory the whole catalog needs.

    Args:
        max_bytes: memory bound; prefixes beyond it are computed (in the full forward) but not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: dict[tuple[int, ...], PrefixStates] = {}
        self._signature: tuple[str, str] | None = None
        self._reported_full = False
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (e.g. after changing the backbone's weights in place)."""
        self._entries.clear()
        self.nbytes = 0
        self._reported_full = False

    def _store(self, key: tuple[int, ...], states: PrefixStates) -> None:
        size = sum(tensor.numel() * tensor.element_size() for tensor in states)
        if self.nbytes + size > self.max_bytes:
            if not self._reported_full:
                self._reported_full = True
                logger.info(
                    "The item-prompt prefix cache is full (%d prefixes, %.0f MiB); later prefixes run in full. Raise "
                    "LLMSRecConfig.item_prefix_cache_mb to about %.0f MiB per 1,000 items to hold a whole catalog.",
                    len(self._entries), self.nbytes / 2**20, 1000 * size / 2**20,
                )
            return
        self._entries[key] = states
        self.nbytes += size

    def missing(self, prefixes: Sequence[tuple[int, ...]], weight: torch.Tensor) -> list[bool]:
        """Per prefix, whether it is not cached (counted as hits and misses). ``weight`` is the backbone's input
        embedding: a cache filled on another device or dtype is dropped."""
        signature = (str(weight.device), str(weight.dtype))
        if signature != self._signature:
            self.clear()
            self._signature = signature
        flags = [prefix not in self._entries for prefix in prefixes]
        self.hits += flags.count(False)
        self.misses += len({prefix for prefix, flag in zip(prefixes, flags) if flag})
        return flags

    def states(self, prefixes: Sequence[tuple[int, ...]]) -> list[PrefixStates]:
        """The cached states of each prefix (all must be cached, see `missing`)."""
        return [self._entries[prefix] for prefix in prefixes]

    def harvest(self, cache: DynamicCache, prefixes: Sequence[tuple[int, ...] | None], starts: Sequence[int]) -> None:
        """Keep the prefix states of a full forward's ``cache``: row ``r``'s prefix ``prefixes[r]`` (None: skip) sits
        at columns ``starts[r]:starts[r] + len(prefix)``, computed there exactly as alone (causal attention, positions
        counted from the row's first real token)."""
        layers = [(keys, values) for keys, values, *_ in cache]
        for row, (prefix, start) in enumerate(zip(prefixes, starts)):
            if prefix is None or prefix in self._entries:
                continue
            end = start + len(prefix)
            self._store(prefix, tuple(
                torch.stack((keys[row, :, start:end], values[row, :, start:end])).detach()  # a new tensor
                for keys, values in layers
            ))


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
