"""Model cards and Hub publishing for saved LLM-SRec and SASRec model folders.

A saved model folder is the single source of truth for its card: `config.json` (written by `save_pretrained`)
plus the optional JSON files named below, written by the trainer, the evaluation and the probes (or by
`write_model_card`, which stores what it is given before rendering). The card is rendered from them alone, so
re-rendering is idempotent: the same folder always gives the same README.md, byte for byte.

Rendering reads JSON files and safetensors headers only; the model code is imported only to extract a SASRec
teacher from an LLM-SRec checkpoint, so cards render for folders whose weights were never loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCard, ModelCardData

if TYPE_CHECKING:
    from transformers import PreTrainedModel

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
# Per-protocol counts that the evaluation reports next to the metrics: shown in the card, never metrics.
COUNT_KEYS = ("num_users",)
_COUNT_LABELS = {"num_users": "Users evaluated"}

# Never pushed: trainer state, as `llm_srec.training.checkpointing` writes it (safetensors + JSON) and as plain
# transformers pickles it, and nested Trainer checkpoints, which an output folder may hold next to the model
# (`checkpoint-*/` from a plain Trainer, `checkpoints/checkpoint-*/` from `llm_srec.training.pipeline`).
PUSH_IGNORE_PATTERNS: tuple[str, ...] = (
    "checkpoint-*/", "checkpoints/", "optimizer.*", "scheduler.*", "scaler.*", "rng_state*", "trainer_state.json",
    "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle",
)
# The model's weights (`model.safetensors` or its shards); other safetensors files are trainer state.
WEIGHTS_PATTERN = "model*.safetensors"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_SECRET_KEY = re.compile(r"token", re.IGNORECASE)
_CONFIG_BOOKKEEPING = frozenset({
    "_name_or_path", "architectures", "auto_map", "chunk_size_feed_forward", "dtype", "id2label",
    "is_encoder_decoder", "label2id", "model_type", "output_attentions", "output_hidden_states", "problem_type",
    "return_dict", "torch_dtype", "transformers_version",
})
_BACKBONE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_PROMPT_MARKERS = ("template", "_prefix", "_suffix", "_separator")
_LONG_TEXT = 60
# Generic `TrainingArguments` fields worth a row; fields a subclass adds are always shown.
_TRAINING_ARG_KEYS = (
    "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay",
    "lr_scheduler_type", "warmup_ratio", "warmup_steps", "max_grad_norm", "seed", "data_seed", "bf16", "fp16",
    "gradient_checkpointing", "eval_strategy", "eval_steps", "save_strategy", "metric_for_best_model",
    "greater_is_better", "load_best_model_at_end",
)
_DATA_STATISTICS_LABELS = {
    "dataset": "Dataset",
    "hub_dataset_id": "Hub dataset",
    "num_users": "Users",
    "num_items": "Items",
    "num_interactions": "Interactions",
    "avg_sequence_length": "Average sequence length",
}


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
        config = _read_json(folder / CONFIG_FILE)
        if config is None:
            raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}: not a saved LLM-SRec or SASRec model folder")
        kind = config.get("model_type")
        if kind not in CARD_KINDS:
            raise ValueError(
                f"{folder / CONFIG_FILE} has model_type {kind!r}; model cards exist for {', '.join(CARD_KINDS)}"
            )
        card = _read_json(folder / CARD_FILE) or {}
        random_init = bool(card.get("backbone_random_init", False))
        base_model = card["base_model"] if "base_model" in card else _infer_base_model(config, random_init)
        catalog_ids = (_read_json(folder / ITEM_CATALOG_FILE) or {}).get("external_ids", [])
        return cls(
            kind=kind,
            config=config,
            metrics=_read_json(folder / METRICS_FILE) or {},
            probe=_read_json(folder / PROBE_FILE),
            data_statistics=_read_json(folder / DATA_STATISTICS_FILE),
            training_args=_read_json(folder / TRAINING_ARGS_FILE),
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
        return ModelCard.from_template(card_data(context), template_path=str(template_path), **_view(context))


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
        _write_json(folder / METRICS_FILE, validate_metrics(metrics))
    if probe is not None:
        _write_json(folder / PROBE_FILE, dict(probe))
    if data_statistics is not None:
        _write_json(folder / DATA_STATISTICS_FILE, dict(data_statistics))
    if training_args is not None:
        arguments = {key: value for key, value in training_args.items() if not _SECRET_KEY.search(key)}
        _write_json(folder / TRAINING_ARGS_FILE, arguments)
    updates = {
        "repo_id": repo_id, "base_model": base_model, "backbone_random_init": backbone_random_init,
        "license": license, "tags": tags, "teacher_repo_id": teacher_repo_id, "parent_repo_id": parent_repo_id,
    }
    updates = {key: value for key, value in updates.items() if value is not None}
    if updates:
        _write_json(folder / CARD_FILE, {**(_read_json(folder / CARD_FILE) or {}), **updates})
    card = render_model_card(CardContext.from_folder(folder))
    card.save(folder / README_FILE)
    return card


def push_model_folder(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    teacher_repo_id: str | None = None,
    parent_repo_id: str | None = None,
) -> CommitInfo:
    """Create the repo (if needed), re-render the folder's card for it and upload the folder in one commit.

    Keyword arguments follow transformers v5 `push_to_hub`. `revision` names a branch (created from the default
    branch if missing) or an open PR ref (`refs/pr/N`); `create_pr` opens a new PR against the default branch.
    `teacher_repo_id` / `parent_repo_id` record the linked SASRec teacher / LLM-SRec repo for the card. Pickled
    trainer state and nested checkpoints are not uploaded (`PUSH_IGNORE_PATTERNS`).
    """
    folder = Path(model_dir)
    kind = CardContext.from_folder(folder).kind
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = _prepare_repo(api, repo_id, private=private, revision=revision, create_pr=create_pr)
    write_model_card(folder, repo_id=repo_id, teacher_repo_id=teacher_repo_id, parent_repo_id=parent_repo_id)
    default_message = "Upload LLM-SRec model" if kind == "llm_srec" else "Upload SASRec model"
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message or default_message,
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
        ignore_patterns=list(PUSH_IGNORE_PATTERNS),
    )


def push_sasrec_teacher(
    source: "PreTrainedModel | str | os.PathLike",
    repo_id: str,
    *,
    parent_repo_id: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """Push a SASRec teacher as its own repo, with its own card linking to the LLM-SRec model it serves.

    `source` is a `SASRecModel` (e.g. `model.sasrec`), a SASRec model folder (pushed as is, with its own
    metrics), or an LLM-SRec model folder, whose teacher is extracted from the saved weights without loading
    the backbone (its card then carries the parent's data statistics).
    """
    push = dict(private=private, revision=revision, create_pr=create_pr, commit_description=commit_description,
                token=token, endpoint=endpoint, commit_message=commit_message or "Upload SASRec teacher",
                parent_repo_id=parent_repo_id)
    if isinstance(source, (str, os.PathLike)) and CardContext.from_folder(source).kind == "sasrec":
        return push_model_folder(source, repo_id, **push)
    if not isinstance(source, (str, os.PathLike)) and getattr(source.config, "model_type", None) != "sasrec":
        raise ValueError(f"push_sasrec_teacher needs a SASRecModel or a model folder, got {type(source).__name__}")
    with tempfile.TemporaryDirectory(prefix="llm-srec-teacher-") as staging:
        if isinstance(source, (str, os.PathLike)):
            extract_sasrec_teacher(source, staging)
        else:
            source.save_pretrained(staging)
        return push_model_folder(staging, repo_id, **push)


def push_model_to_hub(
    model: "PreTrainedModel",
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """`PreTrainedModel.push_to_hub` with our card: what the model classes' `push_to_hub` delegates to.

    transformers' own `push_to_hub` replaces README.md with a generic card after `save_pretrained`; this saves
    into a staging folder, renders our card there and pushes it with `push_model_folder`.
    """
    with tempfile.TemporaryDirectory(prefix="llm-srec-push-") as staging:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        if tags:
            write_model_card(staging, tags=tags)
        return push_model_folder(
            staging, repo_id, private=private, revision=revision, create_pr=create_pr,
            commit_message=commit_message, commit_description=commit_description, token=token, endpoint=endpoint,
        )


def extract_sasrec_teacher(model_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Save an LLM-SRec folder's frozen SASRec teacher (`sasrec.*` weights, `sasrec_config`) as a SASRec folder."""
    from safetensors.torch import load_file

    from llm_srec.modeling.configuration_sasrec import SASRecConfig
    from llm_srec.modeling.modeling_sasrec import SASRecModel

    folder = Path(model_dir)
    context = CardContext.from_folder(folder)
    if context.kind != "llm_srec" or not isinstance(context.config.get("sasrec_config"), dict):
        raise ValueError(f"{folder} is not an LLM-SRec model folder with a sasrec_config; no teacher to extract")
    prefix = "sasrec."
    state = {
        name[len(prefix):]: tensor
        for weights in sorted(folder.glob(WEIGHTS_PATTERN))
        for name, tensor in load_file(weights).items()
        if name.startswith(prefix)
    }
    if not state:
        raise ValueError(f"{folder} holds no '{prefix}*' weights; no teacher to extract")
    teacher = SASRecModel(SASRecConfig.from_dict(context.config["sasrec_config"]))
    teacher.load_state_dict(state, strict=True)
    output = Path(output_dir)
    teacher.save_pretrained(output)
    if context.data_statistics is not None:
        _write_json(output / DATA_STATISTICS_FILE, context.data_statistics)
    return output


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


def _prepare_repo(api: HfApi, repo_id: str, *, private: bool | None, revision: str | None, create_pr: bool) -> str:
    """Create the repo and the target branch; returns the repo id the Hub resolved (owner added if missing)."""
    if create_pr and revision is not None:
        raise ValueError(
            "create_pr opens a pull request against the default branch; do not combine it with a revision"
        )
    resolved = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(resolved, branch=revision, exist_ok=True)
    return resolved


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


def _view(context: CardContext) -> dict[str, Any]:
    """Template variables: facts and ready-made Markdown tables, so the templates only lay out prose."""
    config = context.config
    llm_config = config.get("llm_config") if isinstance(config.get("llm_config"), dict) else {}
    sasrec_config = config.get("sasrec_config") if isinstance(config.get("sasrec_config"), dict) else None
    protocols = list(context.metrics)
    names = list(dict.fromkeys(name for values in context.metrics.values() for name in values))
    names = [name for name in names if name not in COUNT_KEYS] + [name for name in names if name in COUNT_KEYS]
    eval_rows = [
        [_COUNT_LABELS.get(name, name),
         *(_format_metric(name, context.metrics[p][name]) if name in context.metrics[p] else "–" for p in protocols)]
        for name in names
    ]
    num_items = (sasrec_config or config).get("num_items")
    parameters = context.parameter_counts
    teacher_parameters = parameters.get("sasrec", 0)
    parameter_rows = [[f"`{group}`", f"{count:,}"] for group, count in parameters.items()]
    return {
        "repo_id": context.repo_id or "OWNER/NAME",
        "example_history": json.dumps(list(context.example_history), ensure_ascii=False),
        "has_repo_id": context.repo_id is not None,
        "base_model": context.base_model,
        "backbone": config.get("llm_name_or_path") or llm_config.get("_name_or_path"),
        "backbone_type": llm_config.get("model_type"),
        "backbone_random_init": context.backbone_random_init,
        "teacher_repo_id": context.teacher_repo_id,
        "parent_repo_id": context.parent_repo_id,
        "num_items": num_items,
        "top_k": min(10, num_items or 10),
        "dataset_name": (context.data_statistics or {}).get("dataset"),
        "protocol_notes": [_protocol_note(protocol) for protocol in protocols],
        "eval_table": _table(["Metric (test split)", *protocols], eval_rows),
        "data_table": _table(["Statistic", "Value"], _data_rows(context.data_statistics)),
        "model_table": _table(["Setting", "Value"], _config_rows(config)),
        "prompts": [(key, json.dumps(value)) for key, value in config.items() if _is_prompt(key, value)],
        "backbone_table": _table(["Backbone setting", "Value"], _config_rows(llm_config, keys=_BACKBONE_KEYS)),
        "teacher_table": _table(["Teacher setting", "Value"], _config_rows(sasrec_config or {})),
        "training_table": _table(["Argument", "Value"], _training_rows(context.training_args)),
        "probe_tables": [
            {"title": table["title"], "table": _table(table["header"], table["rows"])}
            for table in _probe_tables(context.probe)
        ],
        "parameter_table": _table(["Module", "Parameters"], parameter_rows),
        "total_parameters": f"{sum(parameters.values()):,}",
        "added_parameters": f"{sum(parameters.values()) - teacher_parameters:,}",
        "teacher_parameters": f"{teacher_parameters:,}",
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, or "" when there is nothing to show (the template then prints its fallback)."""
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _protocol_note(protocol: str) -> str:
    if protocol == "full-catalog":
        return f"`{protocol}`: the target is ranked against every catalog item not in the user's history."
    negatives, seed = re.fullmatch(r"sampled\(1\+(\d+), seed=(-?\d+)\)", protocol).groups()
    paper = ", the paper's protocol" if negatives == "99" else ""
    return (
        f"`{protocol}`: the target is ranked against {negatives} items drawn at random (seed {seed}, per user) "
        f"among those the user never interacted with{paper}."
    )


def _config_rows(config: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> list[list[str]]:
    """Scalar settings of a config, without transformers' bookkeeping, sub-configs and long prompt texts."""
    names = keys if keys is not None else tuple(
        key for key in config if key not in _CONFIG_BOOKKEEPING and not key.endswith("_token_id")
    )
    return [
        [name, _format(config[name])]
        for name in names
        if name in config
        and not isinstance(config[name], dict)
        and not _is_prompt(name, config[name])
        and config[name] is not None
    ]


def _training_rows(training_args: Mapping[str, Any] | None) -> list[list[str]]:
    """The generic TrainingArguments worth reading, then every argument that a subclass adds."""
    if not training_args:
        return []
    from transformers import TrainingArguments

    generic = {f.name for f in dataclasses.fields(TrainingArguments)}
    names = [key for key in _TRAINING_ARG_KEYS if key in training_args]
    names += [key for key in training_args if key not in generic]
    rows = []
    for name in names:
        value = training_args[name]
        if value is None or isinstance(value, (dict, list)) or (name == "max_steps" and value == -1):
            continue
        rows.append([name, _format(value)])
    return rows


def _data_rows(statistics: Mapping[str, Any] | None) -> list[list[str]]:
    if not statistics:
        return []
    names = [key for key in _DATA_STATISTICS_LABELS if key in statistics]
    names += [key for key in statistics if key not in _DATA_STATISTICS_LABELS]
    return [
        [_DATA_STATISTICS_LABELS.get(name, name.replace("_", " ").capitalize()), _format(statistics[name])]
        for name in names
        if not isinstance(statistics[name], (dict, list)) and statistics[name] not in (None, "")
    ]


def _probe_tables(probe: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One table per probe section: nested keys become the row label, the innermost keys the columns."""
    tables = []
    for section, content in (probe or {}).items():
        rows: list[tuple[str, Mapping[str, Any]]] = []
        if isinstance(content, Mapping):
            _flatten(content, (), rows)
        else:
            rows.append((section, {"value": content}))
        columns = list(dict.fromkeys(column for _, leaf in rows for column in leaf))
        tables.append({
            "title": section.replace("_", " ").capitalize(),
            "header": ["Measure", *columns],
            "rows": [
                [label, *(_format(leaf[c], "ratio" if "change" in c else "metric") if c in leaf else "–"
                          for c in columns)]
                for label, leaf in rows
            ],
        })
    return tables


def _flatten(node: Mapping[str, Any], path: tuple[str, ...], rows: list[tuple[str, Mapping[str, Any]]]) -> None:
    scalars = {key: value for key, value in node.items() if not isinstance(value, Mapping)}
    if scalars:
        if path:
            rows.append((" / ".join(path), scalars))
        else:  # top-level scalars: one row each, in a single "value" column
            rows.extend((key, {"value": value}) for key, value in scalars.items())
    for key, value in node.items():
        if isinstance(value, Mapping):
            _flatten(value, (*path, key), rows)


def _format(value: Any, style: Literal["plain", "metric", "ratio"] = "plain") -> str:
    """A table cell: metrics to 4 places, ratios as signed percentages, large ints grouped, '|' escaped."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float) and style == "ratio":
        text = f"{value:+.2%}"
    elif isinstance(value, float) and style == "metric":
        text = f"{value:.4f}"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        text = f"{value:,}" if abs(value) >= 10_000 else str(value)
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(item) for item in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _format_metric(name: str, value: float) -> str:
    return _format(int(value)) if name in COUNT_KEYS else _format(float(value), "metric")


def _is_prompt(key: str, value: Any) -> bool:
    """Prompt pieces, special tokens and any long text: shown verbatim and quoted in a code block, not a cell."""
    return isinstance(value, str) and (
        any(marker in key for marker in _PROMPT_MARKERS) or key.endswith("_token") or len(value) > _LONG_TEXT
        or "\n" in value
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def _read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _write_json(path: Path, content: Any) -> None:
    """Stable formatting (and no NaN) so that an unchanged input rewrites identical bytes."""
    path.write_text(json.dumps(content, indent=2, allow_nan=False) + "\n", encoding="utf-8")
