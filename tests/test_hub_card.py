"""Model cards: valid Hub metadata, exactly the evaluation's metrics with their protocols, idempotent re-rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from fake_hub import make_model_folder, validate_metadata
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from llm_srec.cli import main
from llm_srec.evaluation.metrics import FULL_CATALOG, RankingMetrics, sampled_protocol
from llm_srec.hub import (
    CARD_FILE,
    METRICS_FILE,
    README_FILE,
    TRAINING_ARGS_FILE,
    CardContext,
    metrics_from_card,
    render_model_card,
    write_model_card,
)

PROBE = {
    "shuffled_training": {
        "sampled(1+99, seed=0)": {"NDCG@10": {"original": 0.31, "shuffled": 0.29, "change": -0.0645}},
    },
    "representation_similarity": {"h_U": 0.81, "f_user(h_U)": 0.74},
}


def evaluation_metrics() -> dict[str, dict[str, float]]:
    """Metrics as the evaluation produces them: `RankingMetrics.compute()` per protocol, keyed by its label."""
    metrics = {}
    for protocol, ranks in ((sampled_protocol(99, 0), [0, 3, 12, 40]), (FULL_CATALOG, [5, 30, 200, 999])):
        state = RankingMetrics(protocol)
        state.update(torch.tensor(ranks), torch.arange(len(ranks)))
        metrics[protocol] = state.compute()
    return metrics


def model_folder(tmp_path: Path, **card_inputs: object) -> Path:
    folder = make_model_folder(tmp_path / "model")
    write_model_card(folder, **card_inputs)
    return folder


def test_card_loads_validates_and_carries_exactly_the_evaluation_metrics(tmp_path: Path) -> None:
    metrics = evaluation_metrics()
    folder = model_folder(tmp_path, metrics=metrics, repo_id="alice/llm-srec-tiny")

    text = (folder / README_FILE).read_text(encoding="utf-8")
    assert validate_metadata(text) == []
    card = ModelCard.load(folder / README_FILE)
    assert card.data.library_name == "transformers"
    assert card.data.base_model == "meta-llama/Llama-3.2-3B-Instruct"
    assert card.data.license == "apache-2.0"
    assert card.data.tags == ["recommendation", "sequential-recommendation", "llm-srec"]

    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "llm-srec-tiny"
    received = {(result.metric_config, result.metric_type): result.metric_value for result in results}
    expected = {
        (protocol, metric): value
        for protocol, values in metrics.items()
        for metric, value in values.items()
        if metric != "num_users"
    }
    assert received == expected
    assert len(results) == len(expected) == 8
    assert all(result.metric_name == f"{result.metric_type} {result.metric_config}" for result in results)
    assert {result.dataset_split for result in results} == {"test"}
    assert metrics_from_card(card) == {
        protocol: {metric: value for metric, value in values.items() if metric != "num_users"}
        for protocol, values in metrics.items()
    }


def test_parameter_counts_come_from_the_model_weights_only(tmp_path: Path) -> None:
    text = (model_folder(tmp_path) / README_FILE).read_text(encoding="utf-8")
    assert "**Weights in this repository:** 68 parameters, of which 24 were trained by LLM-SRec and 44" in text
    assert "| `sasrec` | 44 |" in text and "`state`" not in text  # optimizer.safetensors is trainer state


def test_rerendering_replaces_the_card_and_is_byte_identical(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, probe=PROBE, repo_id="alice/llm-srec-tiny")
    first = (folder / README_FILE).read_bytes()

    write_model_card(folder)
    assert (folder / README_FILE).read_bytes() == first
    assert main(["card", "--model", str(folder)]) == 0
    assert (folder / README_FILE).read_bytes() == first
    text = first.decode()
    assert text.startswith("---\n") and text.count("\n---\n") == 1
    assert text.count("## Evaluation") == text.count("## Sequence-understanding probes") == 1


def test_evaluation_table_names_the_protocol_in_every_column(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    text = (folder / README_FILE).read_text(encoding="utf-8")
    evaluation = text.split("## Evaluation", 1)[1]
    header = next(line for line in evaluation.splitlines() if line.startswith("| Metric"))
    assert header == "| Metric (test split) | sampled(1+99, seed=0) | full-catalog |"
    assert "| NDCG@10 | 0.3100 | 0.0410 |" in evaluation
    assert "| Users evaluated | 50 | 50 |" in evaluation
    assert "cannot be compared" in evaluation


def test_probe_results_appear_only_when_recorded(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    assert "## Sequence-understanding probes" not in (folder / README_FILE).read_text(encoding="utf-8")

    write_model_card(folder, probe=PROBE)
    text = (folder / README_FILE).read_text(encoding="utf-8")
    assert "| sampled(1+99, seed=0) / NDCG@10 | 0.3100 | 0.2900 | -6.45% |" in text
    assert "| f_user(h_U) | 0.7400 |" in text


def test_random_backbone_is_labelled_and_not_claimed_as_base_model(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, backbone_random_init=True)
    card = ModelCard.load(folder / README_FILE)
    assert card.data.base_model is None and "base_model_relation" not in card.data.to_dict()
    assert "randomly initialised" in card.text and "Demo model" in card.text
    assert validate_metadata(str(card)) == []


def test_local_backbone_path_is_not_a_base_model(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["llm_name_or_path"] = str(tmp_path)
    (folder / "config.json").write_text(json.dumps(config))
    card = write_model_card(folder)
    assert card.data.base_model is None
    assert "a local model that is not on the Hub" in card.text and "llm=" in card.text


def test_sasrec_card_links_its_llm_srec_model(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "teacher", kind="sasrec")
    card = write_model_card(folder, parent_repo_id="alice/llm-srec-tiny", repo_id="alice/sasrec-tiny")
    assert card.data.tags == ["recommendation", "sequential-recommendation", "llm-srec", "sasrec"]
    assert card.data.base_model is None
    assert "teacher of [`alice/llm-srec-tiny`](https://huggingface.co/alice/llm-srec-tiny)" in card.text
    assert 'SASRecModel.from_pretrained("alice/sasrec-tiny")' in card.text
    assert validate_metadata(str(card)) == []


def test_training_arguments_are_stored_without_secrets_and_shown_selectively(tmp_path: Path) -> None:
    arguments = {"learning_rate": 1e-4, "output_dir": "runs/x", "hub_token": "hf_secret", "num_train_negatives": 3}
    folder = model_folder(tmp_path, training_args=arguments)
    assert json.loads((folder / TRAINING_ARGS_FILE).read_text()) == {
        "learning_rate": 1e-4, "output_dir": "runs/x", "num_train_negatives": 3,
    }
    training = (folder / README_FILE).read_text(encoding="utf-8").split("Training:", 1)[1].split("##", 1)[0]
    assert "| learning_rate | 0.0001 |" in training and "| num_train_negatives | 3 |" in training
    assert "output_dir" not in training and "hf_secret" not in training


def test_usage_snippet_names_the_repo(tmp_path: Path) -> None:
    text = render_model_card(CardContext.from_folder(model_folder(tmp_path, repo_id="alice/llm-srec-tiny"))).text
    assert 'LLMSRecForRecommendation.from_pretrained("alice/llm-srec-tiny")' in text
    assert 'AutoModel.from_pretrained("alice/llm-srec-tiny", trust_remote_code=True)' in text
    assert 'model.recommend([["item-1", "item-7"]], k=10)' in text
    assert "@inproceedings{kim2025lost" in text and "2502.13909" in text


def test_usage_snippet_uses_real_catalog_ids_when_the_folder_has_a_catalog(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    (folder / "item_catalog.json").write_text(json.dumps({"external_ids": ["B07X", "B08Y", "B09Z"],
                                                          "titles": ["a", "b", "c"]}))
    assert 'model.recommend([["B07X", "B08Y"]], k=10)' in write_model_card(folder).text


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"NDCG@10": {"value": 0.3}}, "not a protocol label"),
        ({"sampled(1+99, seed=0)": {"NDCG@10": float("nan")}}, "not a finite number"),
        ({"full-catalog": {}}, "non-empty"),
    ],
)
def test_metrics_without_a_protocol_or_a_number_are_rejected(tmp_path: Path, metrics: dict, message: str) -> None:
    folder = make_model_folder(tmp_path / "model")
    before = (folder / METRICS_FILE).read_bytes()
    with pytest.raises(ValueError, match=re.escape(message)):
        write_model_card(folder, metrics=metrics)
    assert (folder / METRICS_FILE).read_bytes() == before


def test_card_cli_can_write_elsewhere_without_touching_the_folder(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    output = tmp_path / "CARD.md"
    assert main(["card", "--model", str(folder), "--output", str(output), "--repo-id", "alice/x"]) == 0
    assert 'from_pretrained("alice/x")' in output.read_text(encoding="utf-8")
    assert not (folder / README_FILE).exists() and not (folder / CARD_FILE).exists()


def test_card_cli_reports_a_folder_without_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "--model", str(tmp_path)]) == 2
    assert "not a saved LLM-SRec or SASRec model folder" in capsys.readouterr().err


# Every public name of the single-module `llm_srec.hub` that the package split kept (PUSH_IGNORE_PATTERNS gave way
# to the push allow-list, MODEL_FILES): importers of `llm_srec.hub` must not notice the split.
HUB_NAMES = [
    "BASE_TAGS", "CARD_FILE", "CARD_KINDS", "CONFIG_FILE", "COUNT_KEYS", "DATA_STATISTICS_FILE",
    "DEFAULT_EXAMPLE_HISTORY", "DEFAULT_LICENSE", "EVAL_SPLIT", "ITEM_CATALOG_FILE", "LIBRARY_NAME", "METRICS_FILE",
    "PROBE_FILE", "PROTOCOL_PATTERN", "README_FILE", "TASK_NAME", "TASK_TYPE", "TEMPLATES", "TRAINING_ARGS_FILE",
    "WEIGHTS_PATTERN", "CardContext", "CardKind", "card_data", "count_parameters", "eval_results",
    "extract_sasrec_teacher", "metrics_from_card", "push_model_folder", "push_model_to_hub", "push_sasrec_teacher",
    "render_model_card", "validate_metrics", "write_model_card",
]


def test_hub_package_exports_every_name_of_the_former_module() -> None:
    import llm_srec.hub as hub

    assert set(HUB_NAMES) <= set(hub.__all__)
    assert [name for name in hub.__all__ if not hasattr(hub, name)] == []
