"""Template variables of a model card: facts and ready-made Markdown tables, so the Jinja templates
(`llm_srec/hub_cards/`) only lay out prose.

Kept apart from `cards` because this is presentation only: which settings deserve a row, how numbers are
formatted, what counts as a prompt. It reads a `CardContext` and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import TYPE_CHECKING, Any, Literal, Mapping

if TYPE_CHECKING:
    from .cards import CardContext

# Per-protocol counts that the evaluation reports next to the metrics: shown in the card, never metrics.
COUNT_KEYS = ("num_users",)
_COUNT_LABELS = {"num_users": "Users evaluated"}

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


def template_variables(context: "CardContext") -> dict[str, Any]:
    """Everything the card templates print, computed from `context` alone."""
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
        "backbone_gguf_source": _gguf_source(config.get("llm_name_or_path")),
        "backbone_random_init": context.backbone_random_init,
        "recipe": config.get("recipe"),
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


def _gguf_source(backbone: Any) -> str | None:
    """"`file` of `source`" when the backbone folder was de-quantised from a GGUF file (`convert_gguf_backbone`
    writes ``gguf_source.json`` there), so the card names the exact weights, not just a local folder."""
    if not isinstance(backbone, str) or not os.path.isfile(record_path := os.path.join(backbone, "gguf_source.json")):
        return None
    try:
        with open(record_path, encoding="utf-8") as handle:
            record = json.load(handle)
        return f"`{record['gguf_file']}` of `{record['source']}`, de-quantised to {record['dequantized_to']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
