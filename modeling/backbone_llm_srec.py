"""The frozen backbone's set-up: k-bit preparation, the LoRA adapter, and the checks made before loading it.

Why apart from the model: these wrap peft and transformers' loading conventions; the model only calls them once,
while it is built or loaded.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers.utils import is_peft_available


def missing_backbone_folder(llm_name_or_path: str) -> bool:
    """True when ``llm_name_or_path`` is a local path (absolute, ``./``, ``../``, ``~`` or deeper than a Hub
    ``owner/name``) with no folder there: a moved model or backbone, which transformers would report as a bad Hub id."""
    looks_local = (
        os.path.isabs(llm_name_or_path) or llm_name_or_path.startswith((".", "~")) or llm_name_or_path.count("/") > 1
    )
    return looks_local and not os.path.isdir(os.path.expanduser(llm_name_or_path))


def backbone_hidden_size(llm_config: Any) -> int | None:
    """The hidden size of a (possibly multimodal) backbone config's text model."""
    text_config = llm_config.get_text_config() if hasattr(llm_config, "get_text_config") else llm_config
    return getattr(text_config, "hidden_size", None)


def is_quantized(model: nn.Module) -> bool:
    """transformers sets ``hf_quantizer`` on models loaded with a ``quantization_config``."""
    return getattr(model, "hf_quantizer", None) is not None


def mark_initialized(model: nn.Module) -> None:
    """Protect an already-built submodel from transformers' weight initialisation of the composite model."""
    for module in model.modules():
        module._is_hf_initialized = True


def embedding_statistics(weight: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of an embedding matrix, accumulated in float64 chunk by chunk (memory-safe)."""
    total = total_sq = 0.0
    count = weight.numel()
    rows_per_chunk = max(1, (1 << 22) // max(1, weight.shape[-1]))
    for chunk in weight.detach().split(rows_per_chunk):
        chunk = chunk.double()
        total += chunk.sum().item()
        total_sq += chunk.pow(2).sum().item()
    mean = total / count
    variance = max(total_sq / count - mean * mean, 0.0) * count / max(count - 1, 1)
    return mean, variance**0.5


def prepare_quantized_backbone(llm: nn.Module) -> None:
    """peft's k-bit preparation (fp32 norms/embeddings, frozen weights), as the official code did for 8-bit."""
    if is_peft_available():
        from peft import prepare_model_for_kbit_training
    else:
        raise ImportError("A quantized backbone needs peft for k-bit preparation: pip install peft.")
    prepare_model_for_kbit_training(llm, use_gradient_checkpointing=False)
    llm.requires_grad_(False)


def inject_lora(llm: nn.Module, lora_config: dict[str, Any], prefix: str = "llm.") -> frozenset[str]:
    """Inject a LoRA adapter into the backbone; return the state-dict keys (under ``prefix``) of what it trains."""
    if is_peft_available():
        from peft import LoraConfig, inject_adapter_in_model
    else:
        raise ImportError("config.lora_config needs peft: pip install peft.")
    inject_adapter_in_model(LoraConfig(**lora_config), llm)
    keys = frozenset(f"{prefix}{name}" for name, parameter in llm.named_parameters() if parameter.requires_grad)
    if not keys:
        raise ValueError(f"lora_config {lora_config} adapted no module of the backbone.")
    return keys
