"""LLM-SRec (Kim et al., KDD'25) as transformers models (PAPER.md §2-3, §9), split as LLaVA is.

`LLMSRecModel` is the headless part: a frozen backbone LLM reads a user prompt whose ``[HistoryEmb]`` slots hold
f_I(SASRec item embeddings) and whose ``[UserOut]`` slot holds a learned vector, and returns its last hidden state
there; items are read the same way from an item prompt and ``[ItemOut]``, and the frozen SASRec teacher gives O_u.
`LLMSRecForRecommendation` adds the heads (f_user, f_item, f_CF-user), the training losses (`losses_llm_srec`),
`recommend` with the catalog's item index, and saving and loading. Only f_I, the three heads and the two output
vectors train (plus an optional LoRA adapter); the backbone is never resized, modified or saved.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, DynamicCache, PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput, cached_file, can_return_tuple

from .backbone_llm_srec import (
    backbone_hidden_size,
    embedding_statistics,
    inject_lora,
    is_quantized,
    mark_initialized,
    missing_backbone_folder,
    prepare_quantized_backbone,
)
from .catalog_llm_srec import ITEM_CATALOG_NAME
from .configuration_llm_srec import LLMSRecConfig
from .item_index_llm_srec import (
    ITEM_INDEX_NAME,
    item_index_fingerprint,
    item_side_tensors,
    load_item_index,
    save_item_index,
)
from .length_groups_llm_srec import length_groups_with_columns
from .losses_llm_srec import LOSS_TERMS, distillation_losses, ranked_candidates, soft_cross_entropy, weighted_loss
from .modeling_sasrec import SASRecModel
from .prefix_cache_llm_srec import (
    ItemPrefixCache,
    cache_argument,
    has_dropout,
    prefix_cache_unsupported_reason,
    split_item_prompts,
    stack_prefix_states,
)
from .processing_llm_srec import LLMSRecProcessor
from .saving_llm_srec import (
    INTERRUPTED_SAVE,
    ModelCardPushMixin,
    check_safetensors_file,
    incomplete_folder_message,
    is_complete_json,
    staged_model_folder,
)

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
PROCESSOR_CONFIG_NAME = "processor_config.json"
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LLMSRecModelOutput(ModelOutput):
    """Output of `LLMSRecModel.forward`.

    Args:
        user_hidden_states: h_U, the backbone's last hidden state at ``[UserOut]``, ``(B, d_llm)``.
        item_hidden_states: h_I of the candidates, at ``[ItemOut]``, ``(B, C, d_llm)``.
        teacher_states: O_u, the frozen teacher's user representation, ``(B, d)``.
    """

    user_hidden_states: torch.FloatTensor | None = None
    item_hidden_states: torch.FloatTensor | None = None
    teacher_states: torch.FloatTensor | None = None


@dataclass
class LLMSRecOutput(ModelOutput):
    """Output of `LLMSRecForRecommendation.forward`.

    Args:
        loss: weighted sum of the enabled loss terms (when ``labels`` are given).
        retrieval_loss: sampled-softmax cross-entropy over the candidates (Eq. 1); None when its weight is 0.
        distillation_loss: MSE on L2-normalised f_user vs f_CF-user(O_u) (or the contrastive Eq. 10); None when off.
        uniformity_loss: uniformity of both normalised batches (Eq. 3, no log); None when off.
        score_distillation_loss: KL(p_teacher || p_student) over the ranked candidates; None when off.
        item_distillation_loss: MSE of the normalised f_item(h_I) against the teacher projection of E_i; None when off.
        logits: ``(B, C)`` scores between users and their own candidates (dot products, cosines with
            ``similarity="cosine"``; not divided by the temperature).
        user_embeddings: f_user(h_U), ``(B, d')``.
        item_embeddings: f_item(h_I) of the candidates, ``(B, C, d')``.
        teacher_embeddings: f_CF-user(O_u), ``(B, d')``.
        user_hidden_states: h_U, the backbone's last hidden state at ``[UserOut]``, ``(B, d_llm)``.
    """

    loss: torch.FloatTensor | None = None
    retrieval_loss: torch.FloatTensor | None = None
    distillation_loss: torch.FloatTensor | None = None
    uniformity_loss: torch.FloatTensor | None = None
    score_distillation_loss: torch.FloatTensor | None = None
    item_distillation_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None
    item_embeddings: torch.FloatTensor | None = None
    teacher_embeddings: torch.FloatTensor | None = None
    user_hidden_states: torch.FloatTensor | None = None

@dataclass(frozen=True)
class Recommendation:
    """Top-k recommendations for one user, best first: external ids, titles and dot-product scores."""

    item_ids: list[str]
    titles: list[str]
    scores: list[float]

class PromptBudgetError(ValueError):
    """``max_prompt_length`` exceeds the backbone's positions; carries both numbers so a CLI can name its flag."""

    def __init__(self, max_prompt_length: int, limit: int) -> None:
        super().__init__(
            f"max_prompt_length={max_prompt_length} exceeds the backbone's max_position_embeddings ({limit}); "
            f"set max_prompt_length <= {limit} in the config and the processor."
        )
        self.max_prompt_length = max_prompt_length
        self.limit = limit

def _mlp(in_features: int, hidden_features: int, out_features: int, activation: nn.Module) -> nn.Sequential:
    """Linear -> LayerNorm -> activation -> Linear, the shape of every LLM-SRec head (PAPER.md §3.3)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden_features),
        nn.LayerNorm(hidden_features),
        activation,
        nn.Linear(hidden_features, out_features),
    )

class TeacherIsometry(nn.Module):
    """f_CF-user of ``teacher_projection="fixed"``: the teacher's d-dim space zero-padded into d' >= d dimensions.

    Why: an isometry keeps SASRec's geometry, so f_CF-user(O_u) . f_CF-user(E_i) = O_u . E_i and pulling f_user and
    f_item toward it transfers the teacher's scoring, not only a learned picture of its users. No parameter."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if out_features < in_features:
            raise ValueError(
                f"teacher_projection='fixed' needs embedding_size ({out_features}) >= the teacher's hidden size "
                f"({in_features})."
            )
        self.padding = out_features - in_features

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.pad(hidden_states, (0, self.padding))

def check_processor(processor: LLMSRecProcessor, config: LLMSRecConfig, num_items: int, vocabulary: int) -> None:
    """A processor fits a model when it was built from the config's prompt record (`LLMSRecProcessor.from_config`),
    its catalog has the teacher's ``num_items`` and its pad id is a row of the backbone's ``vocabulary``."""
    # As Hub remote code, AutoModel and AutoProcessor each import this folder's processing module under their own
    # dynamic-module name, so the same class can arrive as two class objects: accept it by name and interface.
    same_class = type(processor).__name__ == LLMSRecProcessor.__name__ and all(
        hasattr(processor, name) for name in ("encode_items", "item_catalog", "history_token_id", "pad_token_id")
    )
    if not (isinstance(processor, LLMSRecProcessor) or same_class):
        raise ValueError(
            f"processor must be an LLMSRecProcessor, got {type(processor).__module__}.{type(processor).__name__}."
        )
    expected = {
        **config.prompt_templates,
        **config.special_tokens,
        "history_length": config.history_length,
        "max_prompt_length": config.max_prompt_length,
    }
    differing = [name for name, value in expected.items() if getattr(processor, name) != value]
    if differing:
        raise ValueError(
            f"The processor's {', '.join(differing)} differ(s) from the model config; build it with "
            "LLMSRecProcessor.from_config(model.config, tokenizer, catalog)."
        )
    catalog = processor.item_catalog
    if catalog is not None and len(catalog) != num_items:
        raise ValueError(
            f"The item catalog has {len(catalog)} items but the SASRec teacher's item table has {num_items}: "
            "they must describe the same items (internal ids 1..num_items)."
        )
    if processor.pad_token_id is None or not 0 <= processor.pad_token_id < vocabulary:
        raise ValueError(
            f"The processor's pad token id {processor.pad_token_id} is not in the backbone's vocabulary "
            f"({vocabulary} rows): is the tokenizer the backbone's?"
        )


class LLMSRecPreTrainedModel(ModelCardPushMixin, PreTrainedModel):
    """Config binding and initialisation of the LLM-SRec heads (xavier-normal linear weights, zero biases)."""

    config_class = LLMSRecConfig
    config: LLMSRecConfig
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _auto_class = "AutoModel"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.xavier_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, LLMSRecModel):
            mean, std = embedding_statistics(module.llm.get_input_embeddings().weight)
            init.normal_(module.user_out_embedding, mean=mean, std=std)
            init.normal_(module.item_out_embedding, mean=mean, std=std)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, as PEFT reports them."""
        trainable = sum(parameter.numel() for parameter in self.parameters() if parameter.requires_grad)
        total = sum(parameter.numel() for parameter in self.parameters())
        return trainable, total

    def print_trainable_parameters(self) -> None:
        """Print trainable vs all parameters (PEFT's format)."""
        trainable, total = self.get_nb_trainable_parameters()
        share = 100 * trainable / total
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {share:.4f}")

class LLMSRecModel(LLMSRecPreTrainedModel):
    """The headless LLM-SRec model: backbone states at the prompts' output tokens, and the teacher's O_u.

    Submodules: ``llm`` (the backbone, an `AutoModel` without LM head; frozen, never saved), ``sasrec`` (the
    teacher; frozen, saved), and the trainable ``item_projection`` (f_I), ``user_out_embedding`` and
    ``item_out_embedding``. Item prompts reuse cached prefix states (`prefix_cache_llm_srec`) and a batch runs in
    groups of similar length (`length_groups_llm_srec`); both leave every state unchanged.

    Args:
        config: the `LLMSRecConfig`.
        llm: an already-loaded backbone (an `AutoModel`, or a model with an LM head whose base model is used).
            Without it the backbone is built, randomly initialised, from ``config.llm_config``; use
            `LLMSRecForRecommendation.from_pretrained` to load real weights.
        sasrec: an already-built SASRec teacher; without it one is built from ``config.sasrec_config``.
        processor: an `LLMSRecProcessor` to attach (needed for the special-token ids and by `recommend`).
        item_prefix_cache_mb: memory bound (MiB) of the item-prompt prefix key/value cache of a causal backbone
            (`prefix_cache_llm_srec`); 0 turns it off. A run-time option (also an attribute): scores are the same
            with and without it.
        group_prompts_by_length: run a batch's prompts through the backbone in groups of similar length, each
            trimmed to its longest (`length_groups_llm_srec`); a run-time option (also an attribute), same scores.
    """

    def __init__(
        self,
        config: LLMSRecConfig,
        llm: PreTrainedModel | None = None,
        sasrec: SASRecModel | None = None,
        processor: LLMSRecProcessor | None = None,
        item_prefix_cache_mb: int = 1024,
        group_prompts_by_length: bool = True,
    ) -> None:
        if isinstance(item_prefix_cache_mb, bool) or not isinstance(item_prefix_cache_mb, int) or item_prefix_cache_mb < 0:
            raise ValueError(
                "item_prefix_cache_mb must be a non-negative integer (0 turns the cache off), got "
                f"{item_prefix_cache_mb!r}."
            )
        if not isinstance(group_prompts_by_length, bool):
            raise ValueError(f"group_prompts_by_length must be True or False, got {group_prompts_by_length!r}.")
        super().__init__(config)
        self.item_prefix_cache_mb = item_prefix_cache_mb
        self.group_prompts_by_length = group_prompts_by_length
        self._processor: LLMSRecProcessor | None = None
        self._adapter_keys: frozenset[str] = frozenset()
        # Diagnostics only (`llm_srec.evaluation.oracle`): a callable (slot_item_ids, "user" | "item") -> states
        # that replaces the backbone's output-token states. None, the default, runs the backbone.
        self.state_override: Any = None
        quantized = False
        if llm is None:
            if config.llm_config is None:
                raise ValueError(
                    "LLMSRecConfig.llm_config is not set: build the config with LLMSRecConfig.from_backbone(...) "
                    "or pass an already-loaded backbone as llm=."
                )
            llm = AutoModel.from_config(config.llm_config)
        else:
            if not isinstance(llm, PreTrainedModel):
                raise ValueError(f"llm must be a transformers PreTrainedModel, got {type(llm).__name__}.")
            quantized = is_quantized(llm)
            if llm.base_model is not llm:
                logger.info("Using the base model of %s as the backbone (no LM head is used).", type(llm).__name__)
                llm = llm.base_model
            if config.llm_config is None:
                config.llm_config = llm.config
            elif backbone_hidden_size(llm.config) != backbone_hidden_size(config.llm_config):
                raise ValueError(
                    f"The backbone's hidden size ({backbone_hidden_size(llm.config)}) differs from "
                    f"config.llm_config's ({backbone_hidden_size(config.llm_config)}): this checkpoint was "
                    f"built for another backbone than {config.llm_name_or_path!r}."
                )
            mark_initialized(llm)
        if sasrec is None:
            if config.sasrec_config is None:
                raise ValueError("LLMSRecConfig.sasrec_config is not set: pass the teacher's SASRecConfig.")
            sasrec = SASRecModel(config.sasrec_config)
        else:
            if not isinstance(sasrec, SASRecModel):
                raise ValueError(f"sasrec must be a SASRecModel, got {type(sasrec).__name__}.")
            if config.sasrec_config is None:
                config.sasrec_config = sasrec.config
            elif (sasrec.config.num_items, sasrec.config.hidden_size) != (
                config.sasrec_config.num_items,
                config.sasrec_config.hidden_size,
            ):
                raise ValueError(
                    f"The SASRec teacher (num_items={sasrec.config.num_items}, hidden_size="
                    f"{sasrec.config.hidden_size}) does not match config.sasrec_config (num_items="
                    f"{config.sasrec_config.num_items}, hidden_size={config.sasrec_config.hidden_size})."
                )
            mark_initialized(sasrec)
        self.llm = llm
        self.sasrec = sasrec

        input_embeddings = llm.get_input_embeddings()
        input_size = input_embeddings.embedding_dim
        hidden_size = backbone_hidden_size(llm.config) or input_size
        teacher_size = sasrec.config.hidden_size
        # The heads, output vectors and teacher live where the backbone's inputs are built.
        device = input_embeddings.weight.device
        self.item_projection = _mlp(teacher_size, input_size, input_size, nn.LeakyReLU()).to(device)
        self._add_heads(hidden_size, teacher_size, device)
        self.user_out_embedding = nn.Parameter(torch.empty(input_size, device=device))
        self.item_out_embedding = nn.Parameter(torch.empty(input_size, device=device))
        self.sasrec.to(device)
        self.post_init()  # once, after the heads: seeded weights are those of a model built in one piece

        self.llm.requires_grad_(False)
        self.sasrec.requires_grad_(False)
        if quantized:
            prepare_quantized_backbone(self.llm)
        if config.lora_config is not None:
            self._adapter_keys = inject_lora(self.llm, config.lora_config)
        self._check_prompt_budget(config.max_prompt_length)
        self._prefix_cache_unsupported = prefix_cache_unsupported_reason(self.llm)
        self._cache_argument = cache_argument(self.llm)
        self._backbone_has_dropout = has_dropout(self.llm)
        self._item_prefix_cache = ItemPrefixCache(item_prefix_cache_mb << 20)
        forward_parameters = inspect.signature(self.llm.forward).parameters
        self._backbone_takes = {
            name: name in forward_parameters for name in ("position_ids", "use_cache", "return_dict")
        }
        if not self._backbone_takes["position_ids"]:
            logger.warning(
                "%s.forward takes no position_ids: with absolute positions, scores then depend on the padding side.",
                type(self.llm).__name__,
            )
        self.sasrec.eval()
        if processor is not None:
            self.processor = processor

    def _add_heads(self, hidden_size: int, teacher_size: int, device: torch.device) -> None:
        """Where a subclass builds its heads: after f_I and before `post_init`, so one initialisation covers them
        in the order a seeded model has always drawn its weights. The headless model has none."""

    # ------------------------------------------------------------------------------------------------ setup

    def _check_prompt_budget(self, max_prompt_length: int) -> None:
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_prompt_length > limit:
            raise PromptBudgetError(max_prompt_length, limit)

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embedding (used by transformers, e.g. for input-gradient hooks)."""
        return self.llm.get_input_embeddings()

    def train(self, mode: bool = True) -> LLMSRecModel:
        """Set the training mode. The teacher always stays in eval mode (a deterministic O_u); the frozen backbone
        follows the mode like any transformers model (so per-layer gradient checkpointing and LoRA dropout work; a
        backbone with dropout, e.g. BERT or GPT-2, applies it while training)."""
        super().train(mode)
        self.sasrec.eval()
        return self

    @property
    def processor(self) -> LLMSRecProcessor | None:
        """The attached `LLMSRecProcessor` (saved with the model; used by `recommend`)."""
        return self._processor

    @processor.setter
    def processor(self, processor: LLMSRecProcessor | None) -> None:
        if processor is not None:
            check_processor(
                processor, self.config, self.sasrec.config.num_items, self.llm.get_input_embeddings().num_embeddings
            )
        self._processor = processor

    def _special_token_ids(self) -> tuple[int, int, int, int]:
        """The processor's ids of ``[HistoryEmb]``, ``[UserOut]``, ``[ItemOut]`` and padding."""
        processor = self._processor
        if processor is None:
            raise ValueError(
                "The model does not know the special-token ids: attach a processor "
                "(model.processor = LLMSRecProcessor.from_config(model.config, tokenizer, catalog))."
            )
        return processor.history_token_id, processor.user_token_id, processor.item_token_id, processor.pad_token_id

    # ---------------------------------------------------------------------------------------------- encoding

    def _backbone_states(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        slot_item_ids: torch.LongTensor | None,
        output_token_id: int,
        output_vector: torch.Tensor,
    ) -> torch.Tensor:
        """The backbone's last hidden state at each prompt's output token, after injecting the vectors (fp32).

        ``[HistoryEmb]`` slots receive f_I(E_i) of ``slot_item_ids`` (non-zero entries, in order, row by row) and the
        output token receives ``output_vector``, by vectorised masked scatter into ``inputs_embeds``; the special ids
        are swapped for the pad id before the embedding lookup, so the backbone's vocabulary is never touched.
        """
        history_id, user_id = self._special_token_ids()[:2]
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}.")
        embedding = self.llm.get_input_embeddings()
        device = embedding.weight.device
        input_ids = input_ids.to(device)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids {tuple(input_ids.shape)}."
            )
        history_mask = input_ids == history_id
        output_counts = ((input_ids == output_token_id) & attention_mask.bool()).sum(-1)
        if bool((output_counts != 1).any()):
            token = self.config.user_token if output_token_id == user_id else self.config.item_token
            raise ValueError(
                f"Every prompt must contain {token} exactly once (outside padding); counts per row: "
                f"{output_counts.tolist()}."
            )
        slot_counts = history_mask.sum(-1)
        if slot_item_ids is None:
            slot_item_ids = input_ids.new_zeros((input_ids.shape[0], 0))
        slot_item_ids = slot_item_ids.to(device)
        if slot_item_ids.dim() != 2 or slot_item_ids.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"Slot item ids must be (batch={input_ids.shape[0]}, slots), got shape {tuple(slot_item_ids.shape)}."
            )
        self.sasrec.check_item_ids(slot_item_ids, "history item ids")
        item_counts = (slot_item_ids > 0).sum(-1)
        if not torch.equal(slot_counts, item_counts):
            raise ValueError(
                f"Mismatched {self.config.history_token} slots and item ids: the prompts hold {slot_counts.tolist()} "
                f"slots but {item_counts.tolist()} non-zero item ids were given."
            )
        if self.state_override is not None:
            states = self.state_override(slot_item_ids, "user" if output_token_id == user_id else "item")
            return states.to(device=self.user_head[0].weight.device, dtype=torch.float32)
        if output_token_id != user_id and self._uses_prefix_cache():
            prefixes, suffixes = split_item_prompts(input_ids, attention_mask, history_id)
            if all(prefixes):
                return self._item_states_with_prefix_cache(
                    input_ids, attention_mask, slot_item_ids, output_token_id, output_vector, prefixes, suffixes
                )
        return self._full_states(input_ids, attention_mask, slot_item_ids, output_token_id, output_vector)

    def _full_states(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        slot_item_ids: torch.LongTensor,
        output_token_id: int,
        output_vector: torch.Tensor,
        harvest: list[tuple[int, ...] | None] | None = None,
    ) -> torch.Tensor:
        """Output states from the full prompts, run in length groups (`length_groups`); with ``harvest`` (a prefix per
        row), the rows' prefix states are kept in the item-prompt prefix cache from the same forward."""
        inputs_embeds = self._prompt_embeddings(input_ids, attention_mask, slot_item_ids, output_token_id, output_vector)
        output_mask = (input_ids == output_token_id) & attention_mask.bool()
        groups = length_groups_with_columns(attention_mask) if self.group_prompts_by_length else []
        if len(groups) <= 1:
            position_ids = self.backbone_position_ids(attention_mask)
            return self._read_output_states(inputs_embeds, attention_mask, position_ids, output_mask, None, harvest)
        parts = []
        for rows, kept in groups:
            index = torch.as_tensor(rows, device=input_ids.device)
            mask = attention_mask[index, kept]
            parts.append(self._read_output_states(
                inputs_embeds[index, kept], mask, self.backbone_position_ids(mask), output_mask[index, kept], None,
                None if harvest is None else [harvest[row] for row in rows],
            ))
        order = torch.as_tensor([row for rows, _ in groups for row in rows], device=parts[0].device)
        return torch.cat(parts)[torch.argsort(order)]

    def _item_states_with_prefix_cache(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        slot_item_ids: torch.LongTensor,
        output_token_id: int,
        output_vector: torch.Tensor,
        prefixes: list[tuple[int, ...]],
        suffixes: list[list[int]],
    ) -> torch.Tensor:
        """Rows with a cached prefix run only their suffix; the others run in full and leave their prefix cached."""
        cache = self._item_prefix_cache
        cache.max_bytes = int(self.item_prefix_cache_mb * 2**20)
        missing = cache.missing(prefixes, self.llm.get_input_embeddings().weight)
        cached_rows = [row for row, flag in enumerate(missing) if not flag]
        if not cached_rows:
            return self._full_states(
                input_ids, attention_mask, slot_item_ids, output_token_id, output_vector, harvest=prefixes
            )
        parts = [self._prefix_cached_states(
            [prefixes[row] for row in cached_rows], [suffixes[row] for row in cached_rows],
            slot_item_ids[torch.as_tensor(cached_rows, device=slot_item_ids.device)], output_token_id, output_vector,
        )]
        new_rows = [row for row, flag in enumerate(missing) if flag]
        if not new_rows:
            return parts[0]
        index = torch.as_tensor(new_rows, device=input_ids.device)
        parts.append(self._full_states(
            input_ids[index], attention_mask[index], slot_item_ids[index], output_token_id, output_vector,
            harvest=[prefixes[row] for row in new_rows],
        ))
        order = torch.as_tensor(cached_rows + new_rows, device=parts[0].device)
        return torch.cat(parts)[torch.argsort(order)]

    def _prompt_embeddings(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        slot_item_ids: torch.LongTensor,
        output_token_id: int,
        output_vector: torch.Tensor,
    ) -> torch.Tensor:
        """The backbone's input embeddings with f_I(E_i) in the ``[HistoryEmb]`` slots and ``output_vector`` at the
        output token (checked ids, on the backbone's device)."""
        embedding = self.llm.get_input_embeddings()
        lookup_ids = self.backbone_lookup_ids(input_ids)
        if bool((lookup_ids >= embedding.num_embeddings).any()) or bool((lookup_ids < 0).any()):
            raise ValueError(
                f"Token ids outside the backbone's vocabulary ({embedding.num_embeddings} rows): the tokenizer does "
                "not belong to this backbone."
            )
        inputs_embeds = embedding(lookup_ids)
        history_mask = input_ids == self._special_token_ids()[0]
        if slot_item_ids.numel() > 0 and bool(history_mask.any()):
            item_vectors = self.item_projection(self.sasrec.item_embeddings[slot_item_ids[slot_item_ids > 0]])
            inputs_embeds = inputs_embeds.masked_scatter(
                history_mask.unsqueeze(-1), item_vectors.to(inputs_embeds.dtype)
            )
        output_mask = (input_ids == output_token_id) & attention_mask.bool()
        return torch.where(
            output_mask.unsqueeze(-1), output_vector.to(device=inputs_embeds.device, dtype=inputs_embeds.dtype),
            inputs_embeds,
        )

    def _read_output_states(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None,
        output_mask: torch.Tensor,
        cache: Any,
        harvest: list[tuple[int, ...] | None] | None = None,
    ) -> torch.Tensor:
        """Run the backbone and return its last hidden state at each row's output token, in float32. ``cache``: the
        past states the prompts continue; ``harvest``: a prefix per row whose states are kept from this forward."""
        kwargs: dict[str, Any] = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if harvest is not None:
            cache = DynamicCache()
        if cache is not None:
            kwargs[self._cache_argument] = cache
            kwargs["use_cache"] = True
        elif self._backbone_takes["use_cache"]:
            kwargs["use_cache"] = False
        if self._backbone_takes["return_dict"]:
            kwargs["return_dict"] = True
        outputs = self.llm(**kwargs)
        hidden_states = getattr(outputs, "last_hidden_state", None)
        if hidden_states is None:
            raise ValueError(
                f"The backbone {type(self.llm).__name__} returned no last_hidden_state "
                f"(got {type(outputs).__name__}); LLM-SRec reads the last hidden state at the output token, so the "
                "backbone must be a base model (AutoModel) that returns one."
            )
        if harvest is not None:
            self._item_prefix_cache.harvest(cache, harvest, attention_mask.int().argmax(-1).tolist())
        positions = output_mask.int().argmax(-1).to(hidden_states.device)
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        return hidden_states[rows, positions].to(device=self.user_head[0].weight.device, dtype=torch.float32)

    def _uses_prefix_cache(self) -> bool:
        """Whether item prompts reuse cached prefix states now (see `llm_srec.modeling.prefix_cache_llm_srec`)."""
        if self.item_prefix_cache_mb == 0 or self._prefix_cache_unsupported or self._adapter_keys:
            return False
        if self.llm.training and self._backbone_has_dropout:
            return False
        if not (self.training and torch.is_grad_enabled()):
            return True
        # gradient checkpointing drops a passed cache (transformers' GradientCheckpointingLayer)
        return not any(getattr(module, "gradient_checkpointing", False) is True for module in self.llm.modules())

    def _prefix_cached_states(
        self,
        prefixes: list[tuple[int, ...]],
        suffixes: list[list[int]],
        slot_item_ids: torch.LongTensor,
        output_token_id: int,
        output_vector: torch.Tensor,
    ) -> torch.Tensor:
        """Output states of item prompts whose prefixes come from the cache: only the suffixes (slot onwards) run,
        each at the positions it has in its full prompt, attending to its own prefix."""
        embedding = self.llm.get_input_embeddings()
        pad_id = self._special_token_ids()[3]
        cache, prefix_mask, prefix_lengths = stack_prefix_states(self._item_prefix_cache.states(prefixes))
        device = embedding.weight.device
        width = max(len(suffix) for suffix in suffixes)
        suffix_ids = torch.full((len(suffixes), width), pad_id, dtype=torch.long, device=device)
        suffix_mask = torch.zeros_like(suffix_ids)
        for row, suffix in enumerate(suffixes):
            suffix_ids[row, : len(suffix)] = torch.as_tensor(suffix, device=device)
            suffix_mask[row, : len(suffix)] = 1
        inputs_embeds = self._prompt_embeddings(suffix_ids, suffix_mask, slot_item_ids, output_token_id, output_vector)
        position_ids = prefix_lengths.to(device).unsqueeze(1) + torch.arange(width, device=device)
        attention_mask = torch.cat([prefix_mask.to(device), suffix_mask], dim=1)
        output_mask = (suffix_ids == output_token_id) & suffix_mask.bool()
        return self._read_output_states(inputs_embeds, attention_mask, position_ids, output_mask, cache)

    def clear_item_prefix_cache(self) -> None:
        """Forget the cached item-prompt prefix states (call after changing the backbone's weights in place)."""
        self._item_prefix_cache.clear()

    def backbone_lookup_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` with the three special tokens replaced by the pad id: their rows of the frozen embedding are
        never read (the placeholders are overwritten), so the backbone's vocabulary is never resized."""
        history_id, user_id, item_id, pad_id = self._special_token_ids()
        special_mask = (input_ids == history_id) | (input_ids == user_id) | (input_ids == item_id)
        return input_ids.masked_fill(special_mask, pad_id)

    def backbone_position_ids(self, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """Positions counted from each row's first real token when a batch is left-padded, else `None`.

        Why `None` otherwise: with right padding the backbone's default positions are the same numbers for every real
        token, and a rotary backbone then computes its cos/sin table once per batch instead of once per row.
        """
        if not self._backbone_takes["position_ids"] or bool(attention_mask[:, 0].all()):
            return None
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def _user_hidden_states(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        history_item_ids: torch.LongTensor | None,
    ) -> torch.Tensor:
        return self._backbone_states(
            input_ids, attention_mask, history_item_ids, self._special_token_ids()[1], self.user_out_embedding
        )

    def _item_hidden_states(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        item_ids: torch.LongTensor | None,
    ) -> torch.Tensor:
        if item_ids is None:
            raise ValueError("encode_items needs item_ids: the internal id of each prompt's item.")
        item_ids = torch.as_tensor(item_ids, device=input_ids.device).reshape(-1, 1)
        return self._backbone_states(
            input_ids, attention_mask, item_ids, self._special_token_ids()[2], self.item_out_embedding
        )

    def _teacher_states(self, sasrec_input_ids: torch.LongTensor) -> torch.Tensor:
        """O_u of the frozen teacher, ``(B, d)`` in float32."""
        with torch.no_grad():
            return self.sasrec.encode_users(sasrec_input_ids.to(self.sasrec.item_embeddings.device)).float()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        history_item_ids: torch.LongTensor | None = None,
        sasrec_input_ids: torch.LongTensor | None = None,
        candidate_input_ids: torch.LongTensor | None = None,
        candidate_attention_mask: torch.Tensor | None = None,
        candidate_item_ids: torch.LongTensor | None = None,
    ) -> LLMSRecModelOutput:
        """The backbone's states at the output tokens of the user and candidate prompts, and the teacher's O_u.

        Args:
            input_ids, attention_mask: ``(B, L)`` user prompts.
            history_item_ids: ``(B, H)`` internal ids filling the ``[HistoryEmb]`` slots in order, 0-padded.
            sasrec_input_ids: ``(B, maxlen)`` left-padded full histories for the teacher (O_u).
            candidate_input_ids, candidate_attention_mask: ``(B*C, Li)`` item prompts of the candidates.
            candidate_item_ids: ``(B, C)`` candidate internal ids.
        """
        user_hidden_states = item_hidden_states = teacher_states = None
        if input_ids is not None:
            user_hidden_states = self._user_hidden_states(input_ids, attention_mask, history_item_ids)
        if candidate_input_ids is not None:
            if candidate_item_ids is None or candidate_item_ids.dim() != 2:
                raise ValueError("candidate_input_ids need candidate_item_ids of shape (batch, candidates).")
            batch_size, num_candidates = candidate_item_ids.shape
            if candidate_input_ids.shape[0] != batch_size * num_candidates:
                raise ValueError(
                    f"Got {candidate_input_ids.shape[0]} candidate prompts for candidate_item_ids of shape "
                    f"{tuple(candidate_item_ids.shape)} (expected {batch_size * num_candidates})."
                )
            item_hidden_states = self._item_hidden_states(
                candidate_input_ids, candidate_attention_mask, candidate_item_ids.reshape(-1)
            ).view(batch_size, num_candidates, -1)
        if sasrec_input_ids is not None:
            teacher_states = self._teacher_states(sasrec_input_ids)
        return LLMSRecModelOutput(
            user_hidden_states=user_hidden_states, item_hidden_states=item_hidden_states, teacher_states=teacher_states
        )

class LLMSRecForRecommendation(LLMSRecModel):
    """LLM-SRec: next-item retrieval with a frozen LLM distilled from a frozen SASRec teacher.

    `LLMSRecModel` plus the trainable heads ``user_head`` (f_user), ``item_head`` (f_item) and ``cf_user_head``
    (f_CF-user), the training losses, `recommend` over the catalog's item index, and the checkpoint format (heads,
    output vectors, teacher and LoRA tensors; never a backbone weight). Why a subclass rather than a wrapper around
    the headless model (LLaVA's ``self.model``): the parameter names, and so every saved folder, stay as they were.
    Arguments as for `LLMSRecModel`.
    """

    def __init__(
        self,
        config: LLMSRecConfig,
        llm: PreTrainedModel | None = None,
        sasrec: SASRecModel | None = None,
        processor: LLMSRecProcessor | None = None,
        item_prefix_cache_mb: int = 1024,
        group_prompts_by_length: bool = True,
    ) -> None:
        self._item_index: torch.Tensor | None = None
        self._item_index_state: tuple | None = None
        super().__init__(
            config, llm=llm, sasrec=sasrec, processor=processor, item_prefix_cache_mb=item_prefix_cache_mb,
            group_prompts_by_length=group_prompts_by_length,
        )

    def _add_heads(self, hidden_size: int, teacher_size: int, device: torch.device) -> None:
        """f_user, f_item and f_CF-user, built while the headless model is (right after f_I, before any weight is
        initialised), so a seeded model gets the weights it got before the split."""
        config = self.config
        self.user_head = _mlp(hidden_size, config.head_hidden_size, config.embedding_size, nn.LeakyReLU()).to(device)
        self.item_head = _mlp(hidden_size, config.head_hidden_size, config.embedding_size, nn.LeakyReLU()).to(device)
        if config.teacher_projection == "fixed":
            self.cf_user_head = TeacherIsometry(teacher_size, config.embedding_size)
        else:
            self.cf_user_head = _mlp(teacher_size, config.cf_hidden_size, config.embedding_size, nn.GELU()).to(device)

    def train(self, mode: bool = True) -> LLMSRecForRecommendation:
        """`LLMSRecModel.train`; training also drops the item index."""
        super().train(mode)
        if mode:
            self._item_index = None
        return self

    # ---------------------------------------------------------------------------------------------- encoding

    def encode_users(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        history_item_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """User representations f_user(h_U), ``(B, d')``, from tokenised user prompts (see `LLMSRecProcessor`);
        L2-normalised with ``similarity="cosine"``."""
        return self._shared_space(self.user_head(self._user_hidden_states(input_ids, attention_mask, history_item_ids)))

    def _shared_space(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Head outputs as they are scored: unit vectors under ``similarity="cosine"``, unchanged under ``"dot"``."""
        return F.normalize(embeddings, dim=-1) if self.config.similarity == "cosine" else embeddings

    def encode_items(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        item_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Item representations f_item(h_I), ``(N, d')``, from tokenised item prompts and their internal ids;
        L2-normalised with ``similarity="cosine"``."""
        return self._shared_space(self.item_head(self._item_hidden_states(input_ids, attention_mask, item_ids)))

    def encode_teacher(self, sasrec_input_ids: torch.LongTensor) -> torch.Tensor:
        """f_CF-user(O_u), ``(B, d')``: the frozen teacher's user representation mapped to the shared space."""
        return self.cf_user_head(self._teacher_states(sasrec_input_ids))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        history_item_ids: torch.LongTensor | None = None,
        sasrec_input_ids: torch.LongTensor | None = None,
        candidate_input_ids: torch.LongTensor | None = None,
        candidate_attention_mask: torch.Tensor | None = None,
        candidate_item_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> LLMSRecOutput:
        """Encode users, their candidates and the teacher view; with ``labels``, compute the training loss.

        Args:
            input_ids, attention_mask, history_item_ids, sasrec_input_ids, candidate_input_ids,
            candidate_attention_mask, candidate_item_ids: as in `LLMSRecModel.forward`.
            labels: ``(B,)`` index of the target among the candidates; triggers the loss.
        """
        states = super().forward(
            input_ids, attention_mask, history_item_ids, sasrec_input_ids, candidate_input_ids,
            candidate_attention_mask, candidate_item_ids, return_dict=True,
        )
        user_embeddings = item_embeddings = logits = teacher_embeddings = None
        if states.user_hidden_states is not None:
            user_embeddings = self._shared_space(self.user_head(states.user_hidden_states))
        if states.item_hidden_states is not None:
            batch_size, num_candidates = states.item_hidden_states.shape[:2]
            flat_states = states.item_hidden_states.reshape(batch_size * num_candidates, -1)
            item_embeddings = self._shared_space(self.item_head(flat_states)).view(batch_size, num_candidates, -1)
        if user_embeddings is not None and item_embeddings is not None:
            if item_embeddings.shape[0] != user_embeddings.shape[0]:
                raise ValueError(
                    f"{user_embeddings.shape[0]} user prompts but candidates for {item_embeddings.shape[0]} users."
                )
            logits = torch.einsum("bd,bcd->bc", user_embeddings, item_embeddings)
        if states.teacher_states is not None:
            teacher_embeddings = self.cf_user_head(states.teacher_states)
        losses: dict[str, torch.Tensor] = {}
        if labels is not None:
            losses = self._losses(
                labels, logits, user_embeddings, item_embeddings, states.teacher_states, teacher_embeddings,
                candidate_item_ids, sasrec_input_ids, history_item_ids,
            )
        return LLMSRecOutput(
            loss=weighted_loss(self.config, losses),
            **{name: losses.get(name) for name in LOSS_TERMS},
            logits=logits,
            user_embeddings=user_embeddings,
            item_embeddings=item_embeddings,
            teacher_embeddings=teacher_embeddings,
            user_hidden_states=states.user_hidden_states,
        )

    def _losses(
        self,
        labels: torch.LongTensor,
        logits: torch.Tensor | None,
        user_embeddings: torch.Tensor | None,
        item_embeddings: torch.Tensor | None,
        teacher_states: torch.Tensor | None,
        teacher_embeddings: torch.Tensor | None,
        candidate_item_ids: torch.LongTensor | None,
        sasrec_input_ids: torch.LongTensor | None,
        history_item_ids: torch.LongTensor | None,
    ) -> dict[str, torch.Tensor]:
        """The enabled loss terms (`losses_llm_srec`), after checking that the batch holds what each one needs."""
        config = self.config
        if user_embeddings is None:
            raise ValueError("labels were given without user prompts (input_ids).")
        labels = labels.to(user_embeddings.device)
        needs_candidates = config.retrieval_loss_weight > 0 or config.score_distillation_loss_weight > 0
        if needs_candidates and logits is None:
            raise ValueError("The retrieval and score-distillation losses need candidate_input_ids and candidate_item_ids.")
        needs_teacher = (
            config.distillation_loss_weight > 0 or config.uniformity_loss_weight > 0
            or config.score_distillation_loss_weight > 0
        )
        if needs_teacher and teacher_states is None:
            raise ValueError("The distillation, uniformity and score-distillation losses need sasrec_input_ids.")
        losses: dict[str, torch.Tensor] = {}
        if needs_candidates:
            ranked_logits, ranked_items, ranked_labels, valid = self._ranked_candidates(
                logits, user_embeddings, item_embeddings, candidate_item_ids, labels, sasrec_input_ids,
                history_item_ids,
            )
            scaled = ranked_logits / config.retrieval_temperature
            if config.retrieval_loss_weight > 0:
                losses["retrieval_loss"] = F.cross_entropy(scaled.masked_fill(~valid, float("-inf")), ranked_labels)
            if config.score_distillation_loss_weight > 0:
                ranked_items = ranked_items.to(self.sasrec.item_embeddings.device)
                teacher_scores = torch.einsum(
                    "bd,bcd->bc", teacher_states, self.sasrec.item_embeddings[ranked_items].float()
                ).to(scaled.device)
                losses["score_distillation_loss"] = soft_cross_entropy(
                    scaled, teacher_scores / config.score_distillation_temperature, valid
                )
        if teacher_states is not None and (config.distillation_loss_weight > 0 or config.uniformity_loss_weight > 0):
            losses.update(distillation_losses(config, user_embeddings, teacher_embeddings))
        if config.item_distillation_loss_weight > 0:
            if item_embeddings is None:
                raise ValueError("The item-distillation loss needs candidate_input_ids and candidate_item_ids.")
            item_ids = candidate_item_ids.reshape(-1).to(self.sasrec.item_embeddings.device)
            targets = self.cf_user_head(self.sasrec.item_embeddings[item_ids].detach().float())
            losses["item_distillation_loss"] = F.mse_loss(
                F.normalize(item_embeddings.reshape(-1, item_embeddings.shape[-1]), dim=-1),
                F.normalize(targets.to(item_embeddings.device), dim=-1),
            )
        return losses

    def _ranked_candidates(
        self,
        logits: torch.Tensor,
        user_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        candidate_item_ids: torch.LongTensor,
        labels: torch.LongTensor,
        sasrec_input_ids: torch.LongTensor | None,
        history_item_ids: torch.LongTensor | None,
    ) -> tuple[torch.Tensor, torch.LongTensor, torch.LongTensor, torch.Tensor]:
        """`ranked_candidates` under the config's ``in_batch_negatives``; a user's seen items are the teacher's
        window, else the prompt's history."""
        seen = sasrec_input_ids if sasrec_input_ids is not None else history_item_ids
        return ranked_candidates(
            self.config.in_batch_negatives, logits, user_embeddings, item_embeddings, candidate_item_ids, labels, seen
        )

    # ------------------------------------------------------------------------------------------ recommending

    def _require_processor(self) -> LLMSRecProcessor:
        if self._processor is None or self._processor.item_catalog is None:
            raise ValueError(
                "recommend needs an attached processor with an item catalog: "
                "model.processor = LLMSRecProcessor.from_config(model.config, tokenizer, catalog)."
            )
        return self._processor

    @torch.no_grad()
    def refresh_item_index(self, batch_size: int = 64) -> torch.Tensor:
        """(Re)compute f_item for every catalog item, ``(num_items, d')``, and keep it for `recommend`, evaluation
        and `save_pretrained` (which writes it as ``item_index.safetensors``).

        An index is dropped as soon as the item-side weights or the catalog change (`train()`, an optimizer step,
        `load_state_dict`, another catalog), so it is never stale.
        """
        processor = self._require_processor()
        num_items = len(processor.item_catalog)
        chunks = []
        for start in range(1, num_items + 1, batch_size):
            batch = processor.encode_items(list(range(start, min(start + batch_size, num_items + 1))))
            chunks.append(self.encode_items(batch["input_ids"], batch["attention_mask"], batch["item_ids"]))
        self._item_index = torch.cat(chunks)
        self._item_index_state = self._current_index_state()
        return self._item_index

    def _current_index_state(self) -> tuple:
        """A cheap key that changes whenever an item-side tensor is modified in place or replaced, or the
        processor or its catalog is swapped (tensor version counters; the full check is `item_index_fingerprint`)."""
        processor = self._processor
        catalog = None if processor is None else processor.item_catalog
        tensors = tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in item_side_tensors(self))
        return (id(processor), id(catalog), tensors)

    @property
    def item_index(self) -> torch.Tensor | None:
        """The catalog's item vectors ``(num_items, d')`` when they are up to date with the model, else None."""
        if self._item_index is not None and self._item_index_state != self._current_index_state():
            self._item_index = self._item_index_state = None
        return self._item_index

    @torch.no_grad()
    def recommend(
        self,
        histories: list[list[str]],
        k: int = 10,
        timestamps: list[list[int] | None] | None = None,
        exclude_history: bool = True,
        batch_size: int = 32,
    ) -> list[Recommendation]:
        """Top-k items of the whole catalog for each history of external item ids (oldest first).

        Args:
            histories: one list of external ids per user.
            k: number of recommendations per user.
            timestamps: optional unix seconds per history item (shown in the prompt).
            exclude_history: never recommend an item already in the user's history.
            batch_size: users (and items, when the index is built) per backbone forward.

        Returns:
            One `Recommendation` per user, best first (fewer than ``k`` when the catalog runs out).
        """
        processor = self._require_processor()
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if isinstance(histories, (str, bytes)) or not histories or any(isinstance(h, (str, bytes)) for h in histories):
            raise ValueError("histories must be a non-empty list of external-id lists (one per user).")
        if timestamps is not None and len(timestamps) != len(histories):
            raise ValueError(f"Got {len(timestamps)} timestamp lists for {len(histories)} histories.")
        catalog = processor.item_catalog
        internal = [catalog.to_internal(history) for history in histories]
        empty = [index for index, history in enumerate(internal) if not history]
        if empty:
            raise ValueError(f"Empty histories at positions {empty}: every user needs at least one item.")
        # every prompt is built (and its timestamps checked) before the item index, which may take minutes
        starts = range(0, len(internal), batch_size)
        batches = [
            processor(
                internal[start : start + batch_size],
                None if timestamps is None else timestamps[start : start + batch_size],
            )
            for start in starts
        ]
        index = self.item_index
        if index is None:
            index = self.refresh_item_index(batch_size)
        results: list[Recommendation] = []
        for start, batch in zip(starts, batches):
            chunk = internal[start : start + batch_size]
            users = self.encode_users(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
            scores = users @ index.t()
            if exclude_history:
                rows = [row for row, history in enumerate(chunk) for _ in history]
                columns = [item - 1 for history in chunk for item in history]
                scores[rows, columns] = float("-inf")
            top_scores, top_columns = scores.topk(min(k, scores.shape[1]), dim=-1)
            for row_scores, row_columns in zip(top_scores.tolist(), top_columns.tolist()):
                kept = [(column + 1, score) for column, score in zip(row_columns, row_scores) if score != float("-inf")]
                item_ids = [item for item, _ in kept]
                results.append(
                    Recommendation(
                        item_ids=catalog.to_external(item_ids),
                        titles=[catalog.title(item) for item in item_ids],
                        scores=[score for _, score in kept],
                    )
                )
        return results

    # ---------------------------------------------------------------------------------------- serialisation

    def checkpoint_state_dict(self, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: heads, output vectors, the SASRec teacher and LoRA tensors; no backbone weight."""
        state_dict = self.state_dict() if state_dict is None else state_dict
        return {
            key: value.detach().cpu().contiguous()
            for key, value in state_dict.items()
            if not key.startswith("llm.") or key in self._adapter_keys
        }

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write config.json (with ``auto_map``), ``model.safetensors`` (see `checkpoint_state_dict`), the modeling
        sources and, when attached, the processor files. The backbone is referenced by ``llm_name_or_path`` only.
        The save is atomic (`staged_model_folder`): the folder is written next to ``save_directory`` and renamed into
        place, so an interrupted save leaves the previous folder (its subfolders, e.g. ``checkpoints/``, are kept).

        Sharding options (``max_shard_size`` ...) are accepted for `Trainer`/`push_to_hub` compatibility and
        ignored: the checkpoint is small. With ``push_to_hub=True`` the folder is also uploaded (``repo_id`` and
        the other kwargs go to `push_to_hub`).
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory {save_directory} is a file, not a folder.")
        if not is_main_process:
            os.makedirs(save_directory, exist_ok=True)
        else:
            with staged_model_folder(save_directory) as staging:
                # config.processor_files lists what the processor wrote: `from_pretrained` requires those files
                self.config.processor_files = []
                if self._processor is not None:
                    before = set(os.listdir(staging))
                    self._processor.save_pretrained(staging)
                    self.config.processor_files = sorted(
                        name for name in set(os.listdir(staging)) - before if not name.endswith(".py")
                    )
                self.config.architectures = [type(self).__name__]
                custom_object_save(self, staging, config=self.config)
                self.config.save_pretrained(staging)
                save_file(
                    self.checkpoint_state_dict(state_dict),
                    os.path.join(staging, WEIGHTS_NAME),
                    metadata={"format": "pt"},
                )
                if state_dict is None and self.item_index is not None:
                    save_item_index(staging, self.item_index, item_index_fingerprint(self))
        if push_to_hub:
            for ignored in ("max_shard_size", "safe_serialization", "variant"):
                kwargs.pop(ignored, None)
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self.push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        llm: PreTrainedModel | None = None,
        config: LLMSRecConfig | None = None,
        processor: LLMSRecProcessor | str | None = "saved",
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        revision: str | None = None,
        subfolder: str = "",
        item_prefix_cache_mb: int = 1024,
        group_prompts_by_length: bool = True,
        **backbone_kwargs: Any,
    ) -> LLMSRecForRecommendation:
        """Load a checkpoint (local folder or Hub repo) in one line; the backbone comes from ``llm_name_or_path``.

        Args:
            pretrained_model_name_or_path: folder or Hub id written by `save_pretrained`.
            llm: an already-loaded backbone to use instead of loading ``config.llm_name_or_path``.
            config: an `LLMSRecConfig` overriding the saved one.
            processor: ``"saved"`` (default) loads the processor saved with the model; the folder must then hold
                every processor file the save wrote (``config.processor_files``), else it is reported incomplete.
                An `LLMSRecProcessor` is attached instead (no processor file is read); None loads no processor.
            cache_dir, force_download, local_files_only, token, revision, subfolder: Hub options for our files.
            item_prefix_cache_mb, group_prompts_by_length: the run-time options of `LLMSRecModel`.
            **backbone_kwargs: go to `AutoModel.from_pretrained` for the backbone, e.g. ``dtype``,
                ``quantization_config``, ``device_map``, ``attn_implementation``. Without ``dtype`` the config's
                ``backbone_dtype`` is used. The heads and the teacher stay in float32.
        """
        if model_args:
            raise TypeError("LLMSRecForRecommendation.from_pretrained takes no extra positional arguments.")
        # Set by AutoModel; ``trust_remote_code`` covers this repository's files only, never the backbone's.
        trust_remote_code = backbone_kwargs.pop("trust_remote_code", None)
        for key in ("_from_auto", "_from_pipeline", "adapter_kwargs", "code_revision"):
            backbone_kwargs.pop(key, None)
        hub_kwargs: dict[str, Any] = {
            "cache_dir": cache_dir,
            "force_download": force_download,
            "local_files_only": local_files_only,
            "token": token,
            "subfolder": subfolder,
        }
        if revision is not None:
            hub_kwargs["revision"] = revision
        if not (processor is None or isinstance(processor, LLMSRecProcessor) or processor == "saved"):
            raise ValueError(f'processor must be "saved", an LLMSRecProcessor or None, got {processor!r}.')
        folder = os.path.join(os.fspath(pretrained_model_name_or_path), subfolder or "")
        if config is None and os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "config.json")):
            raise FileNotFoundError(incomplete_folder_message(folder.rstrip(os.sep), ["config.json"]))
        if config is None:
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        # Everything saved is checked before the (possibly large) backbone is loaded.
        weights_file = cached_file(
            pretrained_model_name_or_path, WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )
        if weights_file is None:
            raise FileNotFoundError(incomplete_folder_message(pretrained_model_name_or_path, [WEIGHTS_NAME]))
        check_safetensors_file(weights_file)
        load_processor = isinstance(processor, str) and _has_saved_processor(
            pretrained_model_name_or_path, config, hub_kwargs
        )
        if llm is None:
            if missing_backbone_folder(config.llm_name_or_path):
                raise FileNotFoundError(
                    f"The backbone folder {config.llm_name_or_path} (the config's llm_name_or_path) does not exist; "
                    "pass llm= (an already-loaded backbone) or config= with llm_name_or_path set to its new place."
                )
            dtype = backbone_kwargs.pop("dtype", None) or config.backbone_dtype
            dtype = _TORCH_DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
            llm = AutoModel.from_pretrained(config.llm_name_or_path, dtype=dtype, **backbone_kwargs)
        elif backbone_kwargs:
            raise ValueError(
                f"Backbone loading options {sorted(backbone_kwargs)} only apply when the backbone is loaded here; "
                "pass them to your own from_pretrained call for llm=."
            )
        model = cls(
            config, llm=llm, item_prefix_cache_mb=item_prefix_cache_mb, group_prompts_by_length=group_prompts_by_length
        )
        try:
            state = load_file(weights_file)
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise ValueError(
                f"{weights_file} is not a valid safetensors file (truncated or corrupt?): {error}"
            ) from None
        expected = set(model.checkpoint_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{weights_file} does not match this model: missing {missing[:10]}, unexpected {unexpected[:10]}."
            )
        model.load_state_dict(state, strict=False)
        if load_processor:
            model.processor = LLMSRecProcessor.from_pretrained(
                pretrained_model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs
            )
        elif isinstance(processor, LLMSRecProcessor):
            model.processor = processor
        model.eval()
        if model.processor is not None and model.processor.item_catalog is not None:
            index_file = cached_file(
                pretrained_model_name_or_path, ITEM_INDEX_NAME, _raise_exceptions_for_missing_entries=False,
                **hub_kwargs,
            )
            if index_file is not None:
                model._load_item_index(index_file)
        return model

    def _load_item_index(self, path: str) -> None:
        """Use a saved item index when its fingerprint matches this model, else log that it is stale and ignore it
        (the index is then rebuilt on first use)."""
        try:
            index, fingerprint = load_item_index(path)
        except ValueError as error:
            logger.warning("%s; the item index is rebuilt on first use.", error)
            return
        expected_shape = (len(self.processor.item_catalog), self.config.embedding_size)
        if tuple(index.shape) != expected_shape or fingerprint != item_index_fingerprint(self):
            logger.warning(
                "Ignoring the stale item index %s: it was computed for other item-side weights, backbone or catalog; "
                "the index is rebuilt on first use.", path,
            )
            return
        self._item_index = index.to(self.user_out_embedding.device)
        self._item_index_state = self._current_index_state()

def _has_saved_processor(
    pretrained_model_name_or_path: str | os.PathLike, config: LLMSRecConfig, hub_kwargs: dict[str, Any]
) -> bool:
    """Whether the folder holds a saved processor; raises naming the missing or corrupt file when it is incomplete.

    ``config.processor_files`` (written by `save_pretrained`, or set from a 0.1.0 config that recorded the
    special-token ids) lists the processor's files; a folder without it holds a processor when it holds
    processor_config.json.
    """
    expected = getattr(config, "processor_files", None)

    def find(name: str) -> str | None:
        return cached_file(
            pretrained_model_name_or_path, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )

    if expected is None:
        if find(PROCESSOR_CONFIG_NAME) is None:
            return False
        expected = [PROCESSOR_CONFIG_NAME, ITEM_CATALOG_NAME, "tokenizer_config.json"]
    if not expected:
        return False
    found = {name: find(name) for name in expected}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(
            incomplete_folder_message(pretrained_model_name_or_path, missing)
            + "; pass processor=... to attach one, or processor=None to load the model without it"
        )
    for name, path in found.items():
        if name.endswith(".json") and not is_complete_json(path):
            raise ValueError(f"{path} is not valid JSON (truncated or corrupt?) {INTERRUPTED_SAVE}")
    return True


__all__ = [
    "LLMSRecForRecommendation",
    "LLMSRecModel",
    "LLMSRecModelOutput",
    "LLMSRecOutput",
    "LLMSRecPreTrainedModel",
    "PromptBudgetError",
    "Recommendation",
    "TeacherIsometry",
    "check_processor",
]
