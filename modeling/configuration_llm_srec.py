"""Configuration of LLM-SRec (Kim et al., KDD'25): a LLaVA-style composite of the backbone LLM's config and the
SASRec teacher's config, plus the heads, prompts, special tokens and loss settings (PAPER.md §2-3, §9).

Self-contained (torch/transformers/stdlib only) so that it also works as Hub remote code.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .configuration_sasrec import SASRecConfig, config_dict_from_json_file

DEFAULT_LLM = "meta-llama/Llama-3.2-3B-Instruct"

# The official code's prompts (PAPER.md §3.4 items 2 and 4), character for character.
DEFAULT_PROMPT_TEMPLATES: dict[str, str] = {
    "user_prompt_prefix": "This user has made a series of purchases in the following order: ",
    "history_item_template": 'Item No.{number}, Time: {time}, "{title}"[HistoryEmb]',
    "history_item_template_no_time": 'Item No.{number}, "{title}"[HistoryEmb]',
    "history_separator": ",",
    "user_prompt_suffix": ". Based on this sequence of purchases, generate user representation token:[UserOut]",
    "item_prompt_template": (
        'The item title and item embedding are as follows: "{title}"[HistoryEmb], '
        "then generate item representation token:[ItemOut]"
    ),
}
DEFAULT_SPECIAL_TOKENS: dict[str, str] = {
    "history_token": "[HistoryEmb]",
    "user_token": "[UserOut]",
    "item_token": "[ItemOut]",
}
DISTILLATION_LOSSES = ("mse", "contrastive")
SIMILARITIES = ("dot", "cosine")
TEACHER_PROJECTIONS = ("mlp", "fixed")
BACKBONE_DTYPES = ("auto", "float32", "float16", "bfloat16")

# Placeholders each formatted template must contain; the special token it must hold exactly once.
_TEMPLATE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "history_item_template": (("number", "time", "title"), ("history_token",)),
    "history_item_template_no_time": (("number", "title"), ("history_token",)),
    "item_prompt_template": (("title",), ("history_token", "item_token")),
}


def check_prompt_templates(templates: Mapping[str, str], special_tokens: Mapping[str, str]) -> None:
    """Raise a ValueError naming the problem when a template lacks a placeholder or misplaces a special token.

    The model finds the history slots and the output token by their special-token ids, so every history-item
    template holds ``[HistoryEmb]`` exactly once, the user prompt ends with ``[UserOut]`` exactly once, the item
    prompt holds ``[HistoryEmb]`` and ``[ItemOut]`` once each, and the fixed text holds none of them.
    """
    tokens = dict(special_tokens)
    for name, value in tokens.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"Special token {name} must be a non-empty string, got {value!r}.")
    if len(set(tokens.values())) != len(tokens):
        raise ValueError(f"Special tokens must be distinct, got {tokens}.")
    for name, value in templates.items():
        if not isinstance(value, str):
            raise ValueError(f"Prompt template {name} must be a string, got {value!r}.")
    for name, (required, token_names) in _TEMPLATE_FIELDS.items():
        template = templates[name]
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
        except ValueError as error:
            raise ValueError(f"Prompt template {name} is not a valid format string: {error}") from error
        missing = [field for field in required if field not in fields]
        if missing:
            raise ValueError(
                f"Prompt template {name} is missing the placeholder(s) "
                + ", ".join("{" + field + "}" for field in missing)
                + f": {template!r}"
            )
        unknown = sorted(fields - set(required))
        if unknown:
            raise ValueError(
                f"Prompt template {name} has unknown placeholder(s) "
                + ", ".join("{" + field + "}" for field in unknown)
                + f" (allowed: {', '.join('{' + field + '}' for field in required)}): {template!r}"
            )
        for token_name, token in tokens.items():
            expected = 1 if token_name in token_names else 0
            count = template.count(token)
            if count != expected:
                raise ValueError(
                    f"Prompt template {name} must contain {token} exactly {expected} time(s), found {count}: "
                    f"{template!r}"
                )
    for name in ("user_prompt_prefix", "history_separator", "user_prompt_suffix"):
        text = templates[name]
        for token_name, token in tokens.items():
            expected = 1 if (name, token_name) == ("user_prompt_suffix", "user_token") else 0
            count = text.count(token)
            if count != expected:
                raise ValueError(
                    f"Prompt text {name} must contain {token} exactly {expected} time(s), found {count}: {text!r}"
                )


def _lora_config_dict(lora_config: Any) -> dict[str, Any] | None:
    """Normalise a LoRA setting (None, a dict of `peft.LoraConfig` kwargs, or a peft config) to a JSON-able dict."""
    if lora_config is None:
        return None
    if hasattr(lora_config, "to_dict") and not isinstance(lora_config, Mapping):
        lora_config = lora_config.to_dict()
    if not isinstance(lora_config, Mapping):
        raise ValueError(
            f"lora_config must be None, a dict of peft.LoraConfig kwargs or a LoraConfig, got {lora_config!r}."
        )
    normalised = {}
    for key, value in lora_config.items():
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        elif isinstance(value, enum.Enum):
            value = value.value  # e.g. peft's PeftType / TaskType
        normalised[key] = value
    return normalised


# Keys a 0.1.0 config.json holds whose setting now has another owner (see `LLMSRecConfig`).
LEGACY_KEYS = (
    "history_token_id", "user_token_id", "item_token_id", "llm_pad_token_id", "num_train_negatives",
    "item_prefix_cache_mb", "group_prompts_by_length",
)
# What a 0.1.0 folder saved without ``processor_files`` held when its config recorded the special-token ids.
_LEGACY_PROCESSOR_FILES = ["processor_config.json", "item_catalog.json", "tokenizer_config.json"]


def _drop_legacy_keys(kwargs: dict[str, Any]) -> None:
    """Remove `LEGACY_KEYS` from config kwargs; a folder that recorded the token ids (so had a processor attached) but
    no ``processor_files`` is taken to hold the processor files such folders held."""
    had_processor = kwargs.get("history_token_id") is not None
    for key in LEGACY_KEYS:
        kwargs.pop(key, None)
    if had_processor and kwargs.get("processor_files") is None:
        kwargs["processor_files"] = list(_LEGACY_PROCESSOR_FILES)


class LLMSRecConfig(PreTrainedConfig):
    """An LLM-SRec model's architecture and loss settings, and the prompt definition its processor is built from.

    The config records the prompts (`LLMSRecProcessor.from_config` builds the processor from them); at run time the
    attached processor owns them and the special-token ids. Training choices (the negatives per example) belong to
    the training arguments, run-time options (prefix cache, length groups) to the model.

    Args:
        llm_name_or_path: Hub id or folder of the frozen backbone, loaded by `from_pretrained` (never saved in our
            checkpoints).
        llm_config: the backbone's config (an `AutoConfig` dict or instance); the model builds the backbone from it
            when constructed without weights. Use `LLMSRecConfig.from_backbone` to fill it from ``llm_name_or_path``.
        sasrec_config: the SASRec teacher's `SASRecConfig` (or its dict).
        head_hidden_size: hidden width of f_user / f_item (2048 in the paper's code).
        embedding_size: d', the shared recommendation space (128).
        cf_hidden_size: hidden width of f_CF-user (128).
        history_length: number of most recent history items shown in the user prompt (10).
        user_prompt_prefix, history_item_template, history_item_template_no_time, history_separator,
        user_prompt_suffix, item_prompt_template: the prompt pieces; the defaults are the official code's.
        history_token, user_token, item_token: the special-token strings ``[HistoryEmb]``, ``[UserOut]``,
            ``[ItemOut]`` (their ids are the processor's: the backbone vocabulary is never resized).
        retrieval_loss_weight, distillation_loss_weight, uniformity_loss_weight: loss weights (1.0 each; a weight of
            0 skips the term, which is how the paper's ablations are expressed).
        distillation_loss: ``"mse"`` (MSE on L2-normalised vectors, the code) or ``"contrastive"`` (Eq. 10).
        contrastive_temperature: temperature of the contrastive variant (0.07).
        similarity: ``"dot"`` (the paper: raw dot products of f_user and f_item) or ``"cosine"`` (both outputs are
            L2-normalised, so every score, at training and at ranking, is a cosine).
        retrieval_temperature: the retrieval loss (and score distillation) divide the scores by this (1.0, the
            paper; a cosine needs a small one, e.g. 0.05, to reach a peaked softmax).
        in_batch_negatives: rank each user's target against every candidate of the batch (the other users'
            targets and negatives are free negatives), not only its own ``1 + num_train_negatives``; candidates
            equal to the user's target or in its history are masked.
        score_distillation_loss_weight: weight of the listwise ranking distillation: KL(p_teacher || p_student) over the
            candidates the retrieval loss ranks, with p_teacher = softmax(O_u . E_i / score_distillation_temperature),
            SASRec's own scores (0: off, the paper).
        score_distillation_temperature: temperature of the teacher's score distribution (1.0).
        item_distillation_loss_weight: weight of an item-side MSE between the L2-normalised f_item(h_I) and the teacher
            projection of E_i (the same map as f_CF-user), so both sides of the shared space follow SASRec (0: off).
        teacher_projection: ``"mlp"`` (the paper's trainable f_CF-user) or ``"fixed"`` (a frozen isometric
            embedding of the teacher's space into d' dimensions, zero-padding, so f_CF-user(O_u) . f_CF-user(E_i)
            equals SASRec's O_u . E_i; needs ``embedding_size >= `` the teacher's hidden size).
        recipe: name of the training recipe the config was built from (`llm_srec.recipes`), shown on the model card.
        lora_config: None (the paper: no backbone weight trains) or `peft.LoraConfig` kwargs for an optional
            adapter on the backbone, saved in our checkpoint.
        max_prompt_length: token budget of a prompt; the oldest history items are dropped first to fit.
        backbone_dtype: dtype used to load the backbone when `from_pretrained` gets none.

    Keys of folders saved by 0.1.0 that now have another owner are read and dropped (`LEGACY_KEYS`): the special-token
    ids (the processor's), ``num_train_negatives`` (the training arguments'), ``item_prefix_cache_mb`` and
    ``group_prompts_by_length`` (run-time options of the model, `from_pretrained` keyword arguments).
    """

    model_type = "llm_srec"
    _auto_class = "AutoConfig"
    _dict_from_json_file = classmethod(config_dict_from_json_file)
    # Both sub-configs are built explicitly in __init__ (works on every transformers 5.x, also as remote code).
    sub_configs = {"llm_config": AutoConfig, "sasrec_config": SASRecConfig}

    def __init__(
        self,
        llm_name_or_path: str = DEFAULT_LLM,
        llm_config: dict | PreTrainedConfig | None = None,
        sasrec_config: dict | SASRecConfig | None = None,
        head_hidden_size: int = 2048,
        embedding_size: int = 128,
        cf_hidden_size: int = 128,
        history_length: int = 10,
        user_prompt_prefix: str = DEFAULT_PROMPT_TEMPLATES["user_prompt_prefix"],
        history_item_template: str = DEFAULT_PROMPT_TEMPLATES["history_item_template"],
        history_item_template_no_time: str = DEFAULT_PROMPT_TEMPLATES["history_item_template_no_time"],
        history_separator: str = DEFAULT_PROMPT_TEMPLATES["history_separator"],
        user_prompt_suffix: str = DEFAULT_PROMPT_TEMPLATES["user_prompt_suffix"],
        item_prompt_template: str = DEFAULT_PROMPT_TEMPLATES["item_prompt_template"],
        history_token: str = DEFAULT_SPECIAL_TOKENS["history_token"],
        user_token: str = DEFAULT_SPECIAL_TOKENS["user_token"],
        item_token: str = DEFAULT_SPECIAL_TOKENS["item_token"],
        retrieval_loss_weight: float = 1.0,
        distillation_loss_weight: float = 1.0,
        uniformity_loss_weight: float = 1.0,
        distillation_loss: str = "mse",
        contrastive_temperature: float = 0.07,
        similarity: str = "dot",
        retrieval_temperature: float = 1.0,
        in_batch_negatives: bool = False,
        score_distillation_loss_weight: float = 0.0,
        score_distillation_temperature: float = 1.0,
        item_distillation_loss_weight: float = 0.0,
        teacher_projection: str = "mlp",
        recipe: str | None = None,
        lora_config: dict | Any | None = None,
        max_prompt_length: int = 1024,
        backbone_dtype: str = "auto",
        **kwargs: Any,
    ) -> None:
        _drop_legacy_keys(kwargs)
        if not isinstance(llm_name_or_path, str) or not llm_name_or_path:
            raise ValueError(f"llm_name_or_path must be a non-empty string, got {llm_name_or_path!r}.")
        for name, value in (
            ("head_hidden_size", head_hidden_size),
            ("embedding_size", embedding_size),
            ("cf_hidden_size", cf_hidden_size),
            ("history_length", history_length),
            ("max_prompt_length", max_prompt_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LLMSRecConfig.{name} must be a positive integer, got {value!r}.")
        for name, value in (
            ("retrieval_loss_weight", retrieval_loss_weight),
            ("distillation_loss_weight", distillation_loss_weight),
            ("uniformity_loss_weight", uniformity_loss_weight),
            ("score_distillation_loss_weight", score_distillation_loss_weight),
            ("item_distillation_loss_weight", item_distillation_loss_weight),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"LLMSRecConfig.{name} must be a non-negative number, got {value!r}.")
        if (
            retrieval_loss_weight + distillation_loss_weight + uniformity_loss_weight + score_distillation_loss_weight
            + item_distillation_loss_weight == 0
        ):
            raise ValueError("At least one loss weight must be > 0.")
        for name, value in (
            ("retrieval_temperature", retrieval_temperature),
            ("score_distillation_temperature", score_distillation_temperature),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"LLMSRecConfig.{name} must be > 0, got {value!r}.")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
        if teacher_projection not in TEACHER_PROJECTIONS:
            raise ValueError(f"teacher_projection must be one of {TEACHER_PROJECTIONS}, got {teacher_projection!r}.")
        if not isinstance(in_batch_negatives, bool):
            raise ValueError(f"in_batch_negatives must be True or False, got {in_batch_negatives!r}.")
        if recipe is not None and (not isinstance(recipe, str) or not recipe):
            raise ValueError(f"recipe must be None or a non-empty string, got {recipe!r}.")
        if distillation_loss not in DISTILLATION_LOSSES:
            raise ValueError(f"distillation_loss must be one of {DISTILLATION_LOSSES}, got {distillation_loss!r}.")
        if not isinstance(contrastive_temperature, (int, float)) or contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {contrastive_temperature!r}.")
        if backbone_dtype not in BACKBONE_DTYPES:
            raise ValueError(f"backbone_dtype must be one of {BACKBONE_DTYPES}, got {backbone_dtype!r}.")
        templates = {
            "user_prompt_prefix": user_prompt_prefix,
            "history_item_template": history_item_template,
            "history_item_template_no_time": history_item_template_no_time,
            "history_separator": history_separator,
            "user_prompt_suffix": user_prompt_suffix,
            "item_prompt_template": item_prompt_template,
        }
        special_tokens = {"history_token": history_token, "user_token": user_token, "item_token": item_token}
        check_prompt_templates(templates, special_tokens)

        if isinstance(llm_config, Mapping):
            if "model_type" not in llm_config:
                raise ValueError("llm_config given as a dict needs its 'model_type' (e.g. 'llama').")
            llm_config = AutoConfig.for_model(**llm_config)
        elif llm_config is not None and not isinstance(llm_config, PreTrainedConfig):
            raise ValueError(f"llm_config must be None, a dict or a PreTrainedConfig, got {type(llm_config).__name__}.")
        if isinstance(sasrec_config, Mapping):
            sasrec_config = SASRecConfig(**{k: v for k, v in sasrec_config.items() if k != "model_type"})
        elif sasrec_config is not None and not isinstance(sasrec_config, SASRecConfig):
            raise ValueError(
                f"sasrec_config must be None, a dict or a SASRecConfig, got {type(sasrec_config).__name__}."
            )
        self.llm_name_or_path = llm_name_or_path
        self.llm_config = llm_config
        self.sasrec_config = sasrec_config
        self.head_hidden_size = head_hidden_size
        self.embedding_size = embedding_size
        self.cf_hidden_size = cf_hidden_size
        self.history_length = history_length
        for name, value in {**templates, **special_tokens}.items():
            setattr(self, name, value)
        self.retrieval_loss_weight = float(retrieval_loss_weight)
        self.distillation_loss_weight = float(distillation_loss_weight)
        self.uniformity_loss_weight = float(uniformity_loss_weight)
        self.distillation_loss = distillation_loss
        self.contrastive_temperature = float(contrastive_temperature)
        self.similarity = similarity
        self.retrieval_temperature = float(retrieval_temperature)
        self.in_batch_negatives = in_batch_negatives
        self.score_distillation_loss_weight = float(score_distillation_loss_weight)
        self.score_distillation_temperature = float(score_distillation_temperature)
        self.item_distillation_loss_weight = float(item_distillation_loss_weight)
        self.teacher_projection = teacher_projection
        self.recipe = recipe
        self.lora_config = _lora_config_dict(lora_config)
        self.max_prompt_length = max_prompt_length
        self.backbone_dtype = backbone_dtype
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """As `PreTrainedConfig.to_dict`, with each sub-config written as its diff from its defaults (readable)."""
        output = super().to_dict()
        for key in self.sub_configs:
            sub_config = getattr(self, key)
            if sub_config is not None:
                output[key] = sub_config.to_diff_dict()
                output[key].pop("transformers_version", None)
        return output

    @property
    def prompt_templates(self) -> dict[str, str]:
        """The six prompt pieces, keyed as in `DEFAULT_PROMPT_TEMPLATES`."""
        return {name: getattr(self, name) for name in DEFAULT_PROMPT_TEMPLATES}

    @property
    def special_tokens(self) -> dict[str, str]:
        """The special-token strings, keyed as in `DEFAULT_SPECIAL_TOKENS`."""
        return {name: getattr(self, name) for name in DEFAULT_SPECIAL_TOKENS}

    @classmethod
    def from_backbone(
        cls,
        llm_name_or_path: str,
        sasrec_config: dict | SASRecConfig | None = None,
        llm_config_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LLMSRecConfig:
        """Build a config whose ``llm_config`` is read from ``llm_name_or_path`` (Hub id or local folder).

        ``llm_config_kwargs`` go to `AutoConfig.from_pretrained` (e.g. ``revision``, ``trust_remote_code``).
        """
        llm_config = AutoConfig.from_pretrained(llm_name_or_path, **(llm_config_kwargs or {}))
        return cls(llm_name_or_path=llm_name_or_path, llm_config=llm_config, sasrec_config=sasrec_config, **kwargs)


__all__ = [
    "LLMSRecConfig",
    "DEFAULT_LLM",
    "DEFAULT_PROMPT_TEMPLATES",
    "DEFAULT_SPECIAL_TOKENS",
    "LEGACY_KEYS",
    "check_prompt_templates",
]
