"""The persisted item index: every catalog item's f_item vector, saved with the model as ``item_index.safetensors``.

Why: encoding a catalog through the backbone takes minutes on real catalogs, and `recommend`, `evaluate` and a
serving process would each redo it. The index is saved with a fingerprint of everything an item vector depends on
(the item-side weights, the teacher's item table, the backbone, the catalog, the item prompt and the token budget),
so a loaded index is used only when the model in memory would compute the same vectors; a stale one is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

ITEM_INDEX_NAME = "item_index.safetensors"
_ITEM_SIDE_PREFIXES = ("item_projection.", "item_head.", "item_out_embedding", "sasrec.item_embedding.")
_BACKBONE_SAMPLES = 16  # values hashed per backbone tensor: tells backbones apart without reading all weights


def _update_with_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    digest.update(name.encode("utf-8"))
    digest.update(str(tuple(tensor.shape)).encode("utf-8"))
    digest.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())


def item_side_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The trainable and teacher tensors an item vector depends on, by state-dict name (adapter tensors included)."""
    adapter_keys = getattr(model, "_adapter_keys", frozenset())
    return [
        (name, tensor) for name, tensor in model.state_dict().items()
        if name.startswith(_ITEM_SIDE_PREFIXES) or name in adapter_keys
    ]


def item_index_fingerprint(model: nn.Module) -> str:
    """A hash of everything the model's item vectors depend on (see the module docstring)."""
    digest = hashlib.sha256()
    for name, tensor in item_side_tensors(model):
        _update_with_tensor(digest, name, tensor)
    for name, parameter in model.llm.named_parameters():
        flat = parameter.detach().reshape(-1)
        step = max(1, flat.numel() // _BACKBONE_SAMPLES)
        _update_with_tensor(digest, f"llm.{name}", flat[::step][:_BACKBONE_SAMPLES])
    digest.update(str(model.llm.get_input_embeddings().weight.dtype).encode("utf-8"))
    processor = model.processor
    catalog = processor.item_catalog
    tokenizer = processor.tokenizer
    settings = {
        "catalog": [catalog.external_ids, catalog.titles],
        "item_prompt_template": processor.item_prompt_template,
        "special_tokens": processor.special_tokens,
        "max_prompt_length": processor.max_prompt_length,
        "tokenizer": [type(tokenizer).__name__, len(tokenizer), tokenizer.padding_side],
        "similarity": model.config.similarity,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def save_item_index(folder: str | os.PathLike, index: torch.Tensor, fingerprint: str) -> str:
    """Write ``item_index.safetensors`` (rows = internal ids 1..N) with its fingerprint; return the path."""
    path = os.path.join(os.fspath(folder), ITEM_INDEX_NAME)
    save_file(
        {"item_index": index.detach().to("cpu", torch.float32).contiguous()},
        path,
        metadata={"format": "pt", "fingerprint": fingerprint, "num_items": str(index.shape[0])},
    )
    return path


def load_item_index(path: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """``(index, fingerprint)`` of a file written by `save_item_index`; a ValueError names a broken file."""
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            index = handle.get_tensor("item_index")
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ValueError(f"{path} is not a valid item index (truncated or corrupt?): {error}") from None
    fingerprint = metadata.get("fingerprint")
    if not fingerprint or index.dim() != 2:
        raise ValueError(f"{path} is not an item index written by save_item_index (no fingerprint or wrong shape).")
    return index, fingerprint


__all__ = ["ITEM_INDEX_NAME", "item_index_fingerprint", "item_side_tensors", "load_item_index", "save_item_index"]
