"""`llm-srec pretrain-sasrec / train / evaluate / recommend / demo`: help everywhere, the commands chained on prepared
data with their numbers cross-checked, clear one-line errors, and the demo as an installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llm_srec import LLMSRecForRecommendation, build_tiny_backbone
from llm_srec.cli import main
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.hub import CardContext

NEGATIVES = 10
SAMPLED = f"sampled(1+{NEGATIVES}, seed=0)"
FULL = "full-catalog"
MY_COMMANDS = ("pretrain-sasrec", "train", "evaluate", "recommend", "demo")
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle"}
TINY_LLM_FLAGS = ["--history-length", "5", "--embedding-size", "16", "--head-hidden-size", "32",
                  "--cf-hidden-size", "16"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Prepared synthetic data, a SASRec teacher and an LLM-SRec model trained through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    config = SyntheticConfig(num_users=40, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    build_recommendation_data(generate_synthetic(config)).save_to_disk(root / "data")
    data = root / "data"
    build_tiny_backbone("llama", json.loads((data / "catalog" / "item_catalog.json").read_text())["titles"],
                        root / "backbone", seed=0)
    assert main(["pretrain-sasrec", "--data", str(data), "--output-dir", str(root / "sasrec"), "--epochs", "2",
                 "--hidden-size", "16", "--num-layers", "1", "--maxlen", "12", "--eval-negatives", str(NEGATIVES),
                 "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--sasrec", str(root / "sasrec"), "--backbone", str(root / "backbone"),
                 "--output-dir", str(root / "model"), "--max-steps", "3", "--batch-size", "8", "--learning-rate",
                 "1e-3", "--eval-fraction", "0.4", "--eval-negatives", str(NEGATIVES), "--no-progress",
                 "--group-by-length", *TINY_LLM_FLAGS]) == 0
    return {"root": root, "data": data, "sasrec": root / "sasrec", "model": root / "model",
            "backbone": root / "backbone"}


@pytest.mark.parametrize("command", MY_COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--output-dir" in text or "--model" in text


def test_pretrain_and_train_write_model_folders_with_cards_and_test_metrics(workspace):
    for folder, kind in ((workspace["sasrec"], "sasrec"), (workspace["model"], "llm_srec")):
        context = CardContext.from_folder(folder)
        assert context.kind == kind
        assert set(context.metrics) == {SAMPLED, FULL}
        assert context.training_args is not None and context.data_statistics["num_users"] == 40
        assert (folder / "README.md").is_file()
        assert not [path for path in folder.rglob("*") if path.suffix in PICKLE_SUFFIXES]
    args = json.loads((workspace["model"] / "training_args.json").read_text(encoding="utf-8"))
    assert args["max_steps"] == 3 and args["eval_steps"] == 2 and args["learning_rate"] == 1e-3
    assert args["train_sampling_strategy"] == "group_by_length"
    model = LLMSRecForRecommendation.from_pretrained(workspace["model"])
    assert model.config.history_length == 5 and model.config.embedding_size == 16
    assert model.item_index is not None and model.item_index.shape == (len(model.processor.item_catalog), 16)


def test_evaluate_reproduces_the_training_runs_test_metrics_and_updates_the_card(workspace, tmp_path, capsys):
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(workspace["model"]), "--data", str(workspace["data"]), "--negatives",
                 str(NEGATIVES), "--output", str(output), "--batch-size", "5", "--no-progress"]) == 0
    evaluated = json.loads(output.read_text(encoding="utf-8"))
    assert evaluated == json.loads((workspace["model"] / "metrics.json").read_text(encoding="utf-8"))
    table = capsys.readouterr().out
    assert SAMPLED in table and FULL in table

    validation = tmp_path / "validation.json"
    assert main(["evaluate", "--model", str(workspace["sasrec"]), "--data", str(workspace["data"]), "--split",
                 "validation", "--protocol", "full", "--output", str(validation), "--no-progress"]) == 0
    assert list(json.loads(validation.read_text(encoding="utf-8"))) == [FULL]

    copy = tmp_path / "model-copy"
    shutil.copytree(workspace["model"], copy)
    (copy / "metrics.json").unlink()
    assert main(["evaluate", "--model", str(copy), "--data", str(workspace["data"]), "--negatives", str(NEGATIVES),
                 "--update-card", "--no-progress"]) == 0
    assert CardContext.from_folder(copy).metrics == evaluated


def test_recommend_prints_ranked_catalog_items_outside_the_history(workspace, capsys):
    catalog = json.loads((workspace["model"] / "item_catalog.json").read_text(encoding="utf-8"))
    history = catalog["external_ids"][:3]
    assert main(["recommend", "--model", str(workspace["model"]), "--history", *history, "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "item", "id", "title", "score"]
    rows = lines[1:]
    assert len(rows) == 4
    model = LLMSRecForRecommendation.from_pretrained(workspace["model"])
    expected = model.recommend([history], k=4)[0]
    for rank, (row, item, title, score) in enumerate(zip(rows, expected.item_ids, expected.titles, expected.scores), 1):
        assert row.split()[:2] == [str(rank), item] and title in row and f"{score:.4f}" in row
        assert item not in history


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recommend", "--model", "{sasrec}", "--history", "x"], "recommend needs an LLM-SRec model"),
        (["recommend", "--model", "{model}", "--history", "not-an-item"], "Unknown external item ids"),
        (["recommend", "--model", "{model}", "--history", "a", "b", "--timestamps", "1"], "--timestamps has 1"),
        (["evaluate", "--model", "{model}", "--data", "{data}", "--split", "validation", "--update-card"],
         "--update-card stores test metrics"),
        (["evaluate", "--model", "{model}", "--data", "{data}"], "cannot sample 99 negatives"),
        (["evaluate", "--model", "{root}", "--data", "{data}"], "not a saved model folder"),
        (["train", "--data", "{data}", "--sasrec", "{sasrec}", "--backbone", "{backbone}", "--output-dir", "{model}"],
         "already holds a model"),
        (["pretrain-sasrec", "--data", "{root}", "--output-dir", "{root}/new"], "not a prepared dataset"),
        (["pretrain-sasrec", "--data", "{data}", "--output-dir", "{root}/new", "--resume"], "nothing to resume"),
    ],
)
def test_user_errors_are_one_line_messages(workspace, argv, message, capsys):
    paths = {name: str(path) for name, path in workspace.items()}
    assert main([part.format(**paths) for part in argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and error.startswith(f"llm-srec {argv[0]}: error:")


def test_train_builds_the_tiny_backbone_and_fits_the_prompt_budget_to_a_backbone(workspace, tmp_path):
    common = ["--data", str(workspace["data"]), "--sasrec", str(workspace["sasrec"]), "--max-steps", "2",
              "--batch-size", "8", "--eval-fraction", "0.5", "--eval-negatives", str(NEGATIVES), "--no-progress",
              *TINY_LLM_FLAGS]
    assert main(["train", *common, "--backbone", "tiny", "--output-dir", str(tmp_path / "tiny")]) == 0
    assert (tmp_path / "tiny" / "backbone" / "config.json").is_file()
    assert CardContext.from_folder(tmp_path / "tiny").backbone_random_init is True
    assert "the backbone is randomly initialised" in (tmp_path / "tiny" / "README.md").read_text(encoding="utf-8")

    titles = json.loads((workspace["data"] / "catalog" / "item_catalog.json").read_text())["titles"]
    short = build_tiny_backbone("llama", titles, tmp_path / "short-backbone", max_position_embeddings=256, seed=0)
    assert main(["train", *common, "--backbone", str(short), "--output-dir", str(tmp_path / "short")]) == 0
    assert json.loads((tmp_path / "short" / "config.json").read_text())["max_prompt_length"] == 256


def test_the_console_script_runs_commands_and_refuses_bad_arguments(tmp_path):
    """The installed `llm-srec` script, on commands that finish in seconds (the demo itself runs in-process below)."""
    executable = shutil.which("llm-srec")
    assert executable, "the llm-srec console script is not installed (pip install -e .)"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    prepared = subprocess.run([executable, "prepare-data", "--source", "synthetic", "--num-users", "30", "--num-items",
                               "20", "--output-dir", str(tmp_path / "data")], capture_output=True, text=True, env=env)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert f"saved to {tmp_path / 'data'}" in prepared.stdout
    refused = subprocess.run([executable, "demo", "--output-dir", str(tmp_path / "demo"), "--threads", "0"],
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == ["llm-srec demo: error: argument --threads: '0' is not a positive integer "
                                           "(see llm-srec demo --help)"]


def test_the_console_script_recommends_without_asking_to_trust_remote_code(workspace):
    """A fresh interpreter imports only `llm_srec.modeling` (no `from llm_srec import ...`): the Auto classes must be
    registered all the same, or loading the processor asks whether to run the folder's code."""
    history = json.loads((workspace["model"] / "item_catalog.json").read_text(encoding="utf-8"))["external_ids"][:2]
    result = subprocess.run([shutil.which("llm-srec"), "recommend", "--model", str(workspace["model"]), "--history",
                             *history, "-k", "3"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "custom code" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 4


@pytest.mark.slow
def test_demo_quick_trains_ranks_and_saves_a_loadable_model_quietly(tmp_path, capfd):
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "--output-dir", str(output)]) == 0
    printed = capfd.readouterr()
    summary = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    assert summary["backbone_random_init"] is True and "never pre-trained" in summary["backbone"]
    protocols = {"sampled(1+99, seed=0)", FULL}
    assert summary["protocols"] == ["sampled(1+99, seed=0)", FULL]
    llm, teacher, random = (summary["results"][name] for name in summary["results"])
    for metrics in (llm, teacher, random):
        assert set(metrics) == protocols
    for protocol in protocols:
        assert llm[protocol]["HR@10"] > 1.5 * random[protocol]["HR@10"]
        assert teacher[protocol]["HR@10"] > 3 * random[protocol]["HR@10"]
    assert "random-init backbone" in printed.out and "full-catalog" in printed.out
    assert "never pre-trained" in printed.out and "1 torch thread(s)" in printed.out
    # quiet: no progress bars, no library chatter, no blank lines from the tokenizer trainer
    for noise in ("%|", "Saving the dataset", "Loading weights", "Writing model shards", "mtime"):
        assert noise not in printed.out + printed.err, noise
    assert "\n\n\n" not in printed.out
    model = LLMSRecForRecommendation.from_pretrained(output / "model")
    assert json.loads((output / "model" / "card.json").read_text())["backbone_random_init"] is True
    assert "random" in (output / "model" / "README.md").read_text(encoding="utf-8").lower()
    assert model.recommend([model.processor.item_catalog.external_ids[:2]], k=3)[0].item_ids
    assert not [path for path in output.rglob("*") if path.suffix in PICKLE_SUFFIXES]
    assert not (output / "model" / "checkpoints").exists()
    assert CardContext.from_folder(output / "model").metrics == llm


def test_a_teacher_never_ranks_another_catalog_of_the_same_size(workspace, tmp_path, capsys):
    """Same item count, other items: evaluating the SASRec folder, or distilling it, is refused by fingerprint."""
    from llm_srec.data import RecommendationData
    from llm_srec.training.pipeline import build_llm_srec, load_model

    config = SyntheticConfig(num_users=40, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    raw = generate_synthetic(config)
    raw.frame["item"] = "other-" + raw.frame["item"]
    raw.titles.index = "other-" + raw.titles.index
    build_recommendation_data(raw).save_to_disk(tmp_path / "other")
    other = RecommendationData.load_from_disk(tmp_path / "other")
    assert other.num_items == 30 and other.catalog != RecommendationData.load_from_disk(workspace["data"]).catalog
    capsys.readouterr()
    code = main(["evaluate", "--model", str(workspace["sasrec"]), "--data", str(tmp_path / "other"),
                 "--negatives", str(NEGATIVES), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert "was trained on another item catalog than the data (catalog fingerprint" in error
    with pytest.raises(ValueError, match="another item catalog"):
        build_llm_srec(other, load_model(workspace["sasrec"]), workspace["backbone"])


def test_every_training_flag_sets_a_field_of_both_arguments_classes():
    """The flags are a table (not generated from the dataclasses, whose import costs torch for every `--help`): a
    renamed or removed field must fail here, not as a TypeError in a user's run."""
    import dataclasses

    from llm_srec.cli._training import _TRAINING_FLAGS
    from llm_srec.training import LLMSRecTrainingArguments, SASRecTrainingArguments

    for arguments in (SASRecTrainingArguments, LLMSRecTrainingArguments):
        fields = {field.name for field in dataclasses.fields(arguments)}
        assert set(_TRAINING_FLAGS.values()) - fields == set(), arguments.__name__


@pytest.mark.parametrize("flags, patience", [([], 10), (["--recipe", "official"], None),
                                             (["--early-stopping-patience", "3"], 3),
                                             (["--recipe", "official", "--early-stopping-patience", "4"], 4)])
def test_pretrain_sasrec_stops_early_unless_the_official_recipe_is_asked_for(workspace, tmp_path, monkeypatch,
                                                                             flags, patience):
    class Captured(Exception):
        pass

    def capture(data, output_dir, args, **kwargs):
        raise Captured(args.early_stopping_patience, args.num_train_epochs)

    monkeypatch.setattr("llm_srec.training.pipeline.pretrain_sasrec", capture)
    with pytest.raises(Captured) as captured:
        main(["pretrain-sasrec", "--data", str(workspace["data"]), "--output-dir", str(tmp_path / "s"), *flags])
    assert captured.value.args == (patience, 200.0)
