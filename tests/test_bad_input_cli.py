"""Every bad input to the command line ends in a clear message: exit status 2, one line on stderr that names the
file, flag or value, no traceback (issue 13). The library-level checks behind them are in test_data_bad_input.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from llm_srec import (
    LLMSRecConfig,
    LLMSRecForRecommendation,
    LLMSRecProcessor,
    SASRecConfig,
    SASRecModel,
    build_tiny_backbone,
)
from llm_srec.cli import main
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic

FIXTURES = Path(__file__).resolve().parent / "data_fixtures"
TABULAR = ["--source", "tabular", "--user-column", "user", "--item-column", "item", "--time-column", "time"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Prepared synthetic data, its tiny backbone, a SASRec folder and an (untrained) LLM-SRec folder on them."""
    root = tmp_path_factory.mktemp("bad-input-cli")
    data = build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=12, num_items=10, min_length=4,
                                                                        max_length=6)))
    data.save_to_disk(root / "data")
    backbone = build_tiny_backbone("llama", data.catalog.titles, root / "backbone", seed=0)
    teacher_config = SASRecConfig(num_items=data.num_items, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=1, max_position_embeddings=10)
    torch.manual_seed(0)
    teacher = SASRecModel(teacher_config)
    teacher.save_pretrained(root / "sasrec")
    config = LLMSRecConfig.from_backbone(str(backbone), sasrec_config=teacher_config, history_length=5,
                                         head_hidden_size=32, embedding_size=16, cf_hidden_size=16)
    processor = LLMSRecProcessor.from_config(config, AutoTokenizer.from_pretrained(backbone), data.catalog)
    LLMSRecForRecommendation(config, llm=AutoModel.from_pretrained(backbone), sasrec=teacher,
                             processor=processor).save_pretrained(root / "model")
    return {"root": root, "data": root / "data", "backbone": backbone, "sasrec": root / "sasrec",
            "model": root / "model", "item": data.catalog.external_ids[0]}


def cli_error(argv: list[object], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run the CLI in-process and check it failed the user-error way, with every fragment in its one line."""
    code = main([str(part) for part in argv])
    error = capsys.readouterr().err.strip()
    assert code == 2, error
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    assert error.startswith(f"llm-srec {argv[0]}: error: "), error
    for fragment in fragments:
        assert fragment in error, error
    return error


def copy_model(workspace: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(workspace["model"], tmp_path / "model"))


# ------------------------------------------------------------------------------------------------ prepare-data
def test_prepare_data_refuses_a_dataset_without_rows(tmp_path, capsys):
    out = tmp_path / "out"
    cli_error(["prepare-data", *TABULAR, "--path", FIXTURES / "interactions_one_per_user.csv", "--output-dir", out],
              capsys, "no split rows: 3 users and 2 items are left", "nothing was dropped")
    assert not out.exists()
    cli_error(["prepare-data", *TABULAR, "--path", FIXTURES / "interactions_kcore.csv", "--output-dir", out,
               "--filter", "kcore", "--min-user-interactions", "9"],
              capsys, "every user was removed: dropped by kcore / user_below_min_interactions: 13 interactions")


def test_prepare_data_reads_recbole_pre_split_subsets_and_other_title_files(tmp_path, capsys):
    folder = FIXTURES / "recbole_valid_test_only"
    assert main(["prepare-data", "--source", "recbole", "--path", str(folder), "--output-dir",
                 str(tmp_path / "games")]) == 0
    printed = capsys.readouterr().out
    assert "presplit_file_absent: 1 files [note] - Games-6k.train.inter absent" in printed
    assert "title_file_of_another_name: 1 files [note] - no Games-6k.item or Games-6k.text: titles read from " \
           "Games.item" in printed
    assert "missing_title" not in printed
    cli_error(["prepare-data", "--source", "recbole", "--path", FIXTURES / "recbole_train_valid_only",
               "--output-dir", tmp_path / "toy"],
              capsys, "neither Toy.inter nor Toy.test.inter found (only Toy.train.inter, Toy.valid.inter")

    several = Path(shutil.copytree(folder, tmp_path / "several"))
    (several / "Other.text").write_text("item_id:token\ttext:token_seq\n1\tX\n", encoding="utf-8")
    argv = ["prepare-data", "--source", "recbole", "--path", several, "--output-dir", tmp_path / "several-out"]
    cli_error(argv, capsys, "several title files of other names ['Games.item', 'Other.text']", "--titles-path")
    assert main([str(part) for part in argv] + ["--titles-path", str(several / "Games.item")]) == 0


def test_prepare_data_refuses_titles_that_match_no_item(tmp_path, capsys):
    cli_error(["prepare-data", *TABULAR, "--path", FIXTURES / "interactions_unknown_items.csv", "--titles-path",
               FIXTURES / "titles_other_ids.csv", "--output-dir", tmp_path / "out"],
              capsys, "none of the 4 items has an entry in the titles", "['1', '2', '3']")


def test_prepare_data_time_columns_that_are_not_unix_seconds(tmp_path, capsys):
    assert main(["prepare-data", *TABULAR, "--path", str(FIXTURES / "interactions_positions.csv"), "--output-dir",
                 str(tmp_path / "positions")]) == 0
    printed = capsys.readouterr().out
    assert "timestamps         no" in printed and "time_column_is_order: 5 interactions [note]" in printed
    cli_error(["prepare-data", *TABULAR, "--path", FIXTURES / "interactions_huge_time.csv", "--output-dir",
               tmp_path / "huge"],
              capsys, "interactions_huge_time.csv: line 3, column 'time': after the year 5000: not a unix time in "
              "seconds; pass time_unit (--time-unit) ms/us/ns: '1e20'")


# -------------------------------------------------------------------------------------------- data folders
def test_broken_data_folders_are_named(workspace, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cli_error(["evaluate", "--model", workspace["model"], "--data", tmp_path / "empty"],
              capsys, "not a prepared dataset (an empty folder)")
    data = Path(shutil.copytree(workspace["data"], tmp_path / "data"))
    (data / "data_info.json").write_text("garbage", encoding="utf-8")
    cli_error(["evaluate", "--model", workspace["model"], "--data", data],
              capsys, f"{data / 'data_info.json'} is not valid JSON (line 1 column 1)")


# --------------------------------------------------------------------------------------------- recommend input
@pytest.mark.parametrize(
    "history, timestamps, message",
    [
        (["a", "b"], ["-5", "-3"], "--timestamps: -5 is negative"),
        (["a"], ["1.5"], "--timestamps: '1.5' is not an integer"),
        (["a"], ["100000000000000"], "--timestamps: 100000000000000 is after the year 5000"),
        (["a", "b"], ["1"], "--timestamps has 1 values for 2 history items"),
    ],
)
def test_recommend_refuses_bad_timestamps(workspace, history, timestamps, message, capsys):
    cli_error(["recommend", "--model", workspace["model"], "--history", *history, "--timestamps", *timestamps],
              capsys, message)


def test_recommend_checks_the_history_before_encoding_the_catalog(workspace, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the catalog was encoded before the history was checked")

    monkeypatch.setattr(LLMSRecForRecommendation, "encode_items", never)
    cli_error(["recommend", "--model", workspace["model"], "--history", "nope"],
              capsys, "--history: Unknown external item ids: ['nope']", "item_catalog.json")


def test_model_recommend_checks_the_history_before_encoding_the_catalog(tiny_model, monkeypatch):
    calls = []
    monkeypatch.setattr(tiny_model, "encode_items", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(ValueError, match=r"Unknown external item ids: \['nope'\]"):
        tiny_model.recommend([["I00", "nope"]])
    with pytest.raises(ValueError, match=r"after the year 5000"):
        tiny_model.recommend([["I00"], ["I01"]], timestamps=[[0], [10**14]], batch_size=1)
    assert calls == []


# --------------------------------------------------------------------------------------- broken model folders
@pytest.mark.parametrize("name", ["config.json", "item_catalog.json", "processor_config.json", "tokenizer.json",
                                  "tokenizer_config.json"])
def test_broken_json_in_a_model_folder_is_named(workspace, tmp_path, name, capsys):
    model = copy_model(workspace, tmp_path)
    (model / name).write_text("garbage", encoding="utf-8")
    cli_error(["recommend", "--model", model, "--history", workspace["item"]], capsys,
              f"{model / name} is not valid JSON")


@pytest.mark.parametrize("name", ["processor_config.json", "tokenizer.json", "tokenizer_config.json"])
def test_processor_from_pretrained_names_the_broken_json(workspace, tmp_path, name):
    model = copy_model(workspace, tmp_path)
    (model / name).write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name} is not valid JSON \(line 2 column 3\)"):
        LLMSRecProcessor.from_pretrained(model)


def test_config_from_pretrained_names_the_broken_json(workspace, tmp_path):
    sasrec = Path(shutil.copytree(workspace["sasrec"], tmp_path / "sasrec"))
    (sasrec / "config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"config\.json is not a JSON object \(found a list\)"):
        SASRecConfig.from_pretrained(sasrec)


def test_a_moved_backbone_is_named_and_backbone_overrides_it(workspace, tmp_path, capsys):
    model = copy_model(workspace, tmp_path)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    gone = tmp_path / "moved-away"
    config["llm_name_or_path"] = str(gone)
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    history = ["--history", workspace["item"]]
    cli_error(["recommend", "--model", model, *history], capsys, f"the backbone folder {gone} recorded in",
              "does not exist", "--backbone")
    with pytest.raises(FileNotFoundError, match=r"moved-away \(the config's llm_name_or_path\) does not exist; "
                                                r"pass llm="):
        LLMSRecForRecommendation.from_pretrained(model)
    cli_error(["recommend", "--model", model, *history, "--backbone", gone], capsys, f"--backbone {gone}: no such")

    assert main(["recommend", "--model", str(model), *history, "-k", "3", "--backbone",
                 str(workspace["backbone"])]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert main(["evaluate", "--model", str(model), "--data", str(workspace["data"]), "--protocol", "full",
                 "--max-users", "3", "--no-progress", "--backbone", str(workspace["backbone"])]) == 0
    assert "full-catalog" in capsys.readouterr().out
    cli_error(["evaluate", "--model", workspace["sasrec"], "--data", workspace["data"], "--backbone",
               workspace["backbone"]], capsys, "--backbone applies to LLM-SRec models")


def test_train_names_the_max_prompt_length_flag(workspace, tmp_path, capsys):
    cli_error(["train", "--data", workspace["data"], "--sasrec", workspace["sasrec"], "--backbone",
               workspace["backbone"], "--output-dir", tmp_path / "out", "--max-prompt-length", "5000",
               "--embedding-size", "16", "--head-hidden-size", "32", "--cf-hidden-size", "16", "--no-progress"],
              capsys, "--max-prompt-length 5000 exceeds the backbone's max_position_embeddings (1024); pass "
              "--max-prompt-length 1024 or less")


def test_non_finite_weights_are_refused_naming_the_file_and_tensor(workspace, tmp_path, capsys):
    model = copy_model(workspace, tmp_path)
    weights = model / "model.safetensors"
    state = load_file(weights)
    name = next(key for key, tensor in state.items() if tensor.is_floating_point())
    state[name].view(-1)[0] = float("nan")
    save_file(state, weights, metadata={"format": "pt"})
    for argv in (["recommend", "--model", model, "--history", workspace["item"]],
                 ["evaluate", "--model", model, "--data", workspace["data"]]):
        cli_error(argv, capsys, f"{weights} holds NaN/inf values in 1 tensor(s): {name}")


def test_non_finite_scores_are_refused(workspace, monkeypatch, capsys):
    monkeypatch.setattr(LLMSRecForRecommendation, "encode_users",
                        lambda self, *args, **kwargs: torch.full((1, self.config.embedding_size), float("nan")))
    cli_error(["recommend", "--model", workspace["model"], "--history", workspace["item"]],
              capsys, "the scores are NaN/inf", "--dtype float32")
