"""Model cards of saved LLM-SRec and SASRec model folders.

A saved model folder is the single source of truth for its card: `config.json` (written by `save_pretrained`)
plus the optional JSON files named below, written by the trainer, the evaluation and the probes (or by
`write_model_card`, which stores what it is given before rendering). The card is rendered from them alone, so
re-rendering is idempotent: the same folder always gives the same README.md, byte for byte.

Rendering reads JSON files and safetensors headers only, so cards render for folders whose weights were never
loaded and without importing the model code.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from llm_srec.modeling.saving_llm_srec import read_json

from .card_views import COUNT_KEYS, template_variables

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
PROBE_FILE = "probe.json"
DATA_STATISTICS_FILE = "data_statistics.json"
TRAINING_ARGS_FILE = "training_args.json"
CARD_FILE = "card.json"
README_FILE = "README.md"
ITEM_CATALOG_FILE = "item_catalog.json"  # written by LLMSRecProcessor.save_pretrained
DEFAULT_EXAMPLE_HISTORY = ("item-1", "item-7")

CardKind = Literal["llm_srec", "sasrec"]
CARD_KINDS: tuple[CardKind, ...] = ("llm_srec", "sasrec")  # equal to the configs' model_type
TEMPLATES: dict[CardKind, str] = {"llm_srec": "llm_srec.md.j2", "sasrec": "sasrec.md.j2"}

LIBRARY_NAME = "transformers"
DEFAULT_LICENSE = "apache-2.0"
BASE_TAGS: dict[CardKind, tuple[str, ...]] = {
    "llm_srec": ("recommendation", "sequential-recommendation", "llm-srec"),
    "sasrec": ("recommendation", "sequential-recommendation", "llm-srec", "sasrec"),
}
TASK_TYPE = "sequential-recommendation"
TASK_NAME = "Sequential Recommendation"
EVAL_SPLIT = "test"

# Protocol labels as the evaluation writes them (DESIGN.md "Protocol labels").
PROTOCOL_PATTERN = re.compile(r"sampled\(1\+\d+, seed=-?\d+\)|full-catalog")
# The model's weights (`model.safetensors` or its shards); other safetensors files are trainer state.
WEIGHTS_PATTERN = "model*.safetensors"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_SECRET_KEY = re.compile(r"token", re.IGNORECASE)


@dataclass
class CardContext:
    """Everything a model card says, in the shape of the folder files it comes from (see DESIGN.md)."""

    kind: CardKind
    config: dict[str, Any]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    probe: dict[str, Any] | None = None
    data_statistics: dict[str, Any] | None = None
    training_args: dict[str, Any] | None = None
    repo_id: str | None = None
    base_model: str | None = None
    backbone_random_init: bool = False
    license: str = DEFAULT_LICENSE
    tags: list[str] = field(default_factory=list)
    teacher_repo_id: str | None = None
    parent_repo_id: str | None = None
    parameter_counts: dict[str, int] = field(default_factory=dict)
    example_history: tuple[str, ...] = DEFAULT_EXAMPLE_HISTORY

    def __post_init__(self) -> None:
        if self.kind not in CARD_KINDS:
            raise ValueError(f"unknown model card kind {self.kind!r}; expected one of {CARD_KINDS}")
        self.metrics = validate_metrics(self.metrics)

    @classmethod
    def from_folder(cls, model_dir: str | os.PathLike) -> "CardContext":
        """Read a saved model folder's config and card files; absent optional files leave their section out."""
        folder = Path(model_dir)
        config = read_optional_json(folder / CONFIG_FILE)
        if config is None:
            raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}: not a saved LLM-SRec or SASRec model folder")
        kind = config.get("model_type")
        if kind not in CARD_KINDS:
            raise ValueError(
                f"{folder / CONFIG_FILE} has model_type {kind!r}; model cards exist for {', '.join(CARD_KINDS)}"
            )
        card = read_optional_json(folder / CARD_FILE) or {}
        random_init = bool(card.get("backbone_random_init", False))
        base_model = card["base_model"] if "base_model" in card else _infer_base_model(config, random_init)
        catalog_ids = (read_optional_json(folder / ITEM_CATALOG_FILE) or {}).get("external_ids", [])
        return cls(
            kind=kind,
            config=config,
            metrics=read_optional_json(folder / METRICS_FILE) or {},
            probe=read_optional_json(folder / PROBE_FILE),
            data_statistics=read_optional_json(folder / DATA_STATISTICS_FILE),
            training_args=read_optional_json(folder / TRAINING_ARGS_FILE),
            repo_id=card.get("repo_id"),
            base_model=base_model,
            backbone_random_init=random_init,
            license=card.get("license", DEFAULT_LICENSE),
            tags=list(card.get("tags", [])),
            teacher_repo_id=card.get("teacher_repo_id"),
            parent_repo_id=card.get("parent_repo_id"),
            parameter_counts=count_parameters(folder),
            example_history=tuple(catalog_ids[:2]) if len(catalog_ids) >= 2 else DEFAULT_EXAMPLE_HISTORY,
        )


def validate_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Check the evaluation's `{protocol: {metric: value}}` shape, so no number reaches a card unlabelled."""
    checked: dict[str, dict[str, float]] = {}
    for protocol, values in metrics.items():
        if not PROTOCOL_PATTERN.fullmatch(protocol):
            raise ValueError(
                f"metrics key {protocol!r} is not a protocol label; expected 'sampled(1+N, seed=S)' or 'full-catalog'"
            )
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"metrics[{protocol!r}] must be a non-empty mapping of metric name to value")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"metrics[{protocol!r}][{name!r}] = {value!r} is not a finite number")
        checked[protocol] = dict(values)
    return checked


def eval_results(context: CardContext) -> list[EvalResult]:
    """One `EvalResult` per (protocol, metric); the protocol is in the name and the config of each."""
    statistics = context.data_statistics or {}
    dataset_id = statistics.get("hub_dataset_id")
    dataset_name = statistics.get("dataset") or dataset_id or "custom data"
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=dataset_id or _slug(dataset_name),
            dataset_name=dataset_name,
            dataset_split=EVAL_SPLIT,
            metric_type=metric,
            metric_name=f"{metric} {protocol}",
            metric_config=protocol,
            metric_value=value,
        )
        for protocol, values in context.metrics.items()
        for metric, value in values.items()
        if metric not in COUNT_KEYS
    ]


def metrics_from_card(card: ModelCard) -> dict[str, dict[str, float]]:
    """The `{protocol: {metric: value}}` dict back from a card's model-index (the inverse of `eval_results`)."""
    metrics: dict[str, dict[str, float]] = {}
    for result in card.data.eval_results or []:
        metrics.setdefault(result.metric_config, {})[result.metric_type] = result.metric_value
    return metrics


def card_data(context: CardContext) -> ModelCardData:
    """The card's YAML metadata.

    `library_name` is `transformers`: the repository is a standard transformers remote-code checkpoint (config
    with `auto_map`, safetensors), so the Hub's "Use this model" snippet, download counting and `AutoModel`
    loading all work; the `llm-srec` tag keeps the package discoverable. `base_model_relation: adapter`
    because the repository holds only weights added to a frozen backbone that is loaded from `base_model`.
    """
    results = eval_results(context)
    statistics = context.data_statistics or {}
    dataset_id = statistics.get("hub_dataset_id")
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=context.license,
        base_model=context.base_model,
        base_model_relation="adapter" if context.base_model else None,
        datasets=[dataset_id] if dataset_id else None,
        tags=[*BASE_TAGS[context.kind], *context.tags],
        model_name=_model_name(context) if results else None,
        eval_results=results or None,
    )


def render_model_card(context: CardContext) -> ModelCard:
    """Render the card of `context.kind` from the package's Jinja template."""
    template = resources.files("llm_srec.hub_cards").joinpath(TEMPLATES[context.kind])
    with resources.as_file(template) as template_path:
        return ModelCard.from_template(
            card_data(context), template_path=str(template_path), **template_variables(context)
        )


def write_model_card(
    model_dir: str | os.PathLike,
    *,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    probe: Mapping[str, Any] | None = None,
    data_statistics: Mapping[str, Any] | None = None,
    training_args: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    backbone_random_init: bool | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    teacher_repo_id: str | None = None,
    parent_repo_id: str | None = None,
) -> ModelCard:
    """Store the given card inputs in the folder, then (re)write its README.md from the folder alone.

    Arguments left `None` keep what the folder already holds, so the trainer, the evaluation and a push can each
    add their part; README.md is replaced, never appended to.
    """
    folder = Path(model_dir)
    if metrics is not None:
        write_json(folder / METRICS_FILE, validate_metrics(metrics))
    if probe is not None:
        write_json(folder / PROBE_FILE, dict(probe))
    if data_statistics is not None:
        write_json(folder / DATA_STATISTICS_FILE, dict(data_statistics))
    if training_args is not None:
        arguments = {key: value for key, value in training_args.items() if not _SECRET_KEY.search(key)}
        write_json(folder / TRAINING_ARGS_FILE, arguments)
    updates = {
        "repo_id": repo_id, "base_model": base_model, "backbone_random_init": backbone_random_init,
        "license": license, "tags": tags, "teacher_repo_id": teacher_repo_id, "parent_repo_id": parent_repo_id,
    }
    updates = {key: value for key, value in updates.items() if value is not None}
    if updates:
        write_json(folder / CARD_FILE, {**(read_optional_json(folder / CARD_FILE) or {}), **updates})
    card = render_model_card(CardContext.from_folder(folder))
    card.save(folder / README_FILE)
    return card


def count_parameters(model_dir: str | os.PathLike) -> dict[str, int]:
    """Parameters per top-level module in the folder's safetensors files, read from headers only."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    for weights in sorted(Path(model_dir).glob(WEIGHTS_PATTERN)):
        with safe_open(weights, framework="numpy") as handle:
            for name in handle.keys():
                group = name.split(".", 1)[0]
                counts[group] = counts.get(group, 0) + math.prod(handle.get_slice(name).get_shape())
    return dict(sorted(counts.items()))


def read_optional_json(path: Path) -> dict[str, Any] | None:
    """An optional file of the folder: its JSON object (`read_json`: a broken file is a ValueError naming it and the
    line), or None when it is absent."""
    return read_json(path) if path.is_file() else None


def json_text(content: Any) -> str:
    """Stable formatting (and no NaN) so that an unchanged input gives identical bytes."""
    return json.dumps(content, indent=2, allow_nan=False) + "\n"


def write_json(path: Path, content: Any) -> None:
    path.write_text(json_text(content), encoding="utf-8")


def _infer_base_model(config: Mapping[str, Any], random_init: bool) -> str | None:
    """The backbone's Hub id, when `llm_name_or_path` is one (not a local path) and its weights were used."""
    name = config.get("llm_name_or_path")
    if random_init or not isinstance(name, str) or not _HUB_ID.fullmatch(name) or os.path.exists(name):
        return None
    return name


def _model_name(context: CardContext) -> str:
    if context.repo_id:
        return context.repo_id.split("/")[-1]
    return "llm-srec" if context.kind == "llm_srec" else "sasrec"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"
