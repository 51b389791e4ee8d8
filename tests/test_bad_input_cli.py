"""Every bad input to the command line ends in a clear message: exit status 2, one line on stderr that names the
file, flag or value, no traceback (issue 13). The library-level checks behind them are in test_data_bad_input.py."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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


# ------------------------------------------------------------------------------- round 3: the one error boundary
def argument_error(argv: list[object], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run the CLI in-process and check it refused an argument while parsing: exit status 2, one line."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(part) for part in argv])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, error
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    for fragment in fragments:
        assert fragment in error, error
    return error


TRAIN = ["train", "--data", "d", "--sasrec", "s", "--backbone", "b", "--output-dir", "o"]


@pytest.mark.parametrize("argv, fragments", [
    (["--log-level", "bogus", "card", "--model", "m"], ["argument --log-level: 'bogus' is not a log level"]),
    ([*TRAIN, "--batch-size", "0"], ["argument --batch-size: '0' is not a positive integer"]),
    ([*TRAIN, "--gradient-accumulation-steps", "0"], ["argument --gradient-accumulation-steps: '0'"]),
    ([*TRAIN, "--epochs", "0"], ["argument --epochs: '0' is not a positive number"]),
    ([*TRAIN, "--learning-rate", "nan"], ["argument --learning-rate: 'nan' is not a positive number"]),
    ([*TRAIN, "--eval-fraction", "2"], ["argument --eval-fraction: '2' is not a fraction between 0 and 1"]),
    ([*TRAIN, "--bf16", "--fp16"], ["argument --fp16: not allowed with argument --bf16"]),
    (["pretrain-sasrec", "--data", "d", "--output-dir", "o", "--epochs", "-1"], ["argument --epochs: '-1'"]),
    (["pretrain-sasrec", "--data", "d", "--output-dir", "o", "--maxlen", "0"], ["argument --maxlen: '0'"]),
    (["recommend", "--model", "m", "--history", "a", "--batch-size", "0"], ["argument --batch-size: '0'"]),
    (["recommend", "--model", "m", "--history", "a", "--batch-size", "-1"], ["argument --batch-size: '-1'"]),
    (["recommend", "--model", "m", "--history", "a", "-k", "0"], ["argument -k: '0' is not a positive integer"]),
    (["evaluate", "--model", "m", "--data", "d", "--max-users", "x"], ["argument --max-users: 'x' is not"]),
    (["prepare-data", "--source", "synthetic", "--output-dir", "o", "--missing-title", "{foo}"],
     ["argument --missing-title: missing title '{foo}' is not a valid placeholder", "{item_id}"]),
], ids=lambda value: " ".join(value) if isinstance(value, list) and len(value) > 1 else None)
def test_bad_values_are_refused_while_parsing_naming_the_flag(argv, fragments, capsys):
    argument_error(argv, capsys, *fragments)


@pytest.mark.parametrize("make, fragments", [
    (lambda tmp: tmp / "adir.csv", ["adir.csv: a folder, not a file"]),
    (lambda tmp: (tmp / "x.csv.gz").write_text("user,item,time\n") and tmp / "x.csv.gz",
     ["x.csv.gz: not a readable gzip file (Not a gzipped file"]),
    (lambda tmp: (tmp / "x.parquet").write_text("hello") and tmp / "x.parquet",
     ["x.parquet: not a readable Parquet file ("]),
], ids=["folder", "not-gzip", "not-parquet"])
def test_unreadable_input_files_are_named(tmp_path, capsys, make, fragments):
    (tmp_path / "adir.csv").mkdir()
    cli_error(["prepare-data", *TABULAR, "--path", make(tmp_path), "--output-dir", tmp_path / "out"], capsys,
              *fragments)


def test_a_truncated_gzip_is_named(tmp_path, capsys):
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(b"user,item,time\n" + b"u1,i1,1000000000\n" * 500)[:-40])
    cli_error(["prepare-data", *TABULAR, "--path", path, "--output-dir", tmp_path / "out"], capsys,
              f"{path}: not a readable gzip file")


def test_a_sasrec_file_with_a_timestamp_column_is_refused(tmp_path, capsys):
    path = tmp_path / "ml.txt"
    path.write_text("".join(f"{user} {item} {1000 + item}\n" for user in (1, 2) for item in range(1, 7)))
    cli_error(["prepare-data", "--source", "sasrec", "--path", path, "--output-dir", tmp_path / "out"], capsys,
              f"{path}: line 1: expected 2 fields (user item), found 3")


def test_a_parquet_column_of_lists_is_refused(tmp_path, capsys):
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"user": ["u1", "u2"], "item": [["i1"], ["i2"]], "time": [1, 2]}), path)
    cli_error(["prepare-data", *TABULAR, "--path", path, "--output-dir", tmp_path / "out"], capsys,
              f"{path}: column 'item' holds list<element: string> values, not one value per row")


def test_a_utf8_bom_csv_is_read_like_any_other(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    rows = "".join(f"u{user},i{item},{1_600_000_000 + item}\n" for user in range(3) for item in range(6))
    path.write_text("user,item,time\n" + rows, encoding="utf-8-sig")
    assert main(["prepare-data", *(str(part) for part in TABULAR), "--path", str(path), "--output-dir",
                 str(tmp_path / "out")]) == 0
    catalog = json.loads((tmp_path / "out" / "catalog" / "item_catalog.json").read_text(encoding="utf-8"))
    assert catalog["external_ids"] == [f"i{item}" for item in range(6)]


@pytest.mark.parametrize("output, fragments", [
    ("afile", ["--output-dir {root}/afile is a file, not a folder"]),
    ("afile/sub", ["--output-dir {root}/afile/sub: {root}/afile is a file, not a folder"]),
])
def test_an_output_dir_that_cannot_be_a_folder_is_refused_before_reading(tmp_path, capsys, output, fragments):
    (tmp_path / "afile").write_text("x")
    for argv in (["prepare-data", "--source", "synthetic"],
                 ["train", "--data", tmp_path / "d", "--sasrec", tmp_path / "s", "--backbone", "b"],
                 ["pretrain-sasrec", "--data", tmp_path / "d"],
                 ["probe", "--model", tmp_path / "m", "--data", tmp_path / "d"],
                 ["demo"]):
        cli_error([*argv, "--output-dir", tmp_path / output], capsys,
                  *(fragment.format(root=tmp_path) for fragment in fragments))


def test_an_unwritable_output_is_refused_before_the_work(workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("llm_srec.cli._arguments.os.access", lambda path, mode: False)  # root ignores chmod
    cli_error(["prepare-data", "--source", "synthetic", "--output-dir", tmp_path / "out"], capsys,
              f"--output-dir {tmp_path / 'out'}: {tmp_path} is not writable (permission denied)")
    cli_error(["evaluate", "--model", workspace["model"], "--data", workspace["data"], "--update-card"], capsys,
              f"--update-card {workspace['model'] / 'metrics.json'}: {workspace['model']} is not writable")
    cli_error(["card", "--model", workspace["model"], "--output", tmp_path / "card.md"], capsys,
              f"--output {tmp_path / 'card.md'}: {tmp_path} is not writable")


def test_an_output_file_that_is_a_folder_is_refused(workspace, tmp_path, capsys):
    cli_error(["evaluate", "--model", workspace["model"], "--data", workspace["data"], "--output", tmp_path],
              capsys, f"--output {tmp_path} is a folder; name a file")
    cli_error(["card", "--model", workspace["model"], "--output", tmp_path], capsys,
              f"--output {tmp_path} is a folder; name a file")


@pytest.mark.parametrize("name", ["metrics.json", "training_args.json", "card.json"])
def test_card_names_a_broken_json_file(workspace, tmp_path, capsys, name):
    model = copy_model(workspace, tmp_path)
    (model / name).write_text("{oops", encoding="utf-8")
    cli_error(["card", "--model", model], capsys, f"{model / name} is not valid JSON (line 1 column 2)")


def test_a_truncated_arrow_split_is_named(workspace, tmp_path, capsys):
    data = Path(shutil.copytree(workspace["data"], tmp_path / "data"))
    arrow = sorted((data / "splits" / "train").glob("*.arrow"))[0]
    arrow.write_bytes(arrow.read_bytes()[:-40])
    cli_error(["evaluate", "--model", workspace["sasrec"], "--data", data], capsys,
              f"{data / 'splits'}: cannot read these Arrow files", "run prepare-data again")


def test_a_model_folder_passed_as_the_backbone_is_named(workspace, tmp_path, capsys):
    cli_error(["train", "--data", workspace["data"], "--sasrec", workspace["sasrec"], "--backbone",
               workspace["sasrec"], "--output-dir", tmp_path / "out"], capsys,
              f"--backbone {workspace['sasrec']} is a SASRec teacher folder, not a language model")
    cli_error(["recommend", "--model", workspace["model"], "--history", workspace["item"], "--backbone",
               workspace["model"]], capsys, f"--backbone {workspace['model']} is an LLM-SRec model folder")


def test_an_unloadable_backbone_names_the_backbone(workspace, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr("llm_srec.training.pipeline.load_model", offline)
    cli_error(["recommend", "--model", workspace["model"], "--history", workspace["item"]], capsys,
              f"loading {workspace['model']} with the backbone {workspace['backbone']} (recorded in",
              "We couldn't connect to 'https://huggingface.co' to load the files. Check your connection.")


def test_os_errors_become_one_line_naming_the_file_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    argv = ["prepare-data", "--source", "synthetic", "--output-dir", tmp_path / "out"]

    def denied(args):
        raise PermissionError(13, "Permission denied", "/data/ratings.csv")

    monkeypatch.setattr("llm_srec.cli.prepare_data.load_raw", denied)
    cli_error(argv, capsys, "/data/ratings.csv: permission denied")
    with pytest.raises(PermissionError):  # --debug (or LLM_SREC_DEBUG=1) shows the traceback
        main([str(part) for part in [*argv, "--debug"]])
    monkeypatch.setenv("LLM_SREC_DEBUG", "1")
    with pytest.raises(PermissionError):
        main([str(part) for part in argv])
    monkeypatch.delenv("LLM_SREC_DEBUG")

    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("llm_srec.cli.prepare_data.load_raw", bug)
    with pytest.raises(ZeroDivisionError):
        main([str(part) for part in argv])


def test_push_refuses_a_link_to_a_file_outside_the_model_folder(tmp_path, capsys):
    from fake_hub import make_model_folder

    from llm_srec.hub import push_model_folder

    folder = make_model_folder(tmp_path / "model")
    private = tmp_path / "private.txt"
    private.write_text("not for the Hub\n")
    (folder / "tokenizer.model").symlink_to(private)  # named like a model file
    hub = ["--token", "hf_unused", "--endpoint", "http://127.0.0.1:9"]  # refused before any request
    cli_error(["push", "--model", folder, "--repo-id", "me/m", *hub], capsys,
              f"{folder / 'tokenizer.model'} is a link to {private}, outside {folder}; only files inside the model "
              "folder are pushed")
    (folder / "tokenizer.model").unlink()
    (folder / "notes").mkdir()
    (folder / "notes" / "link.md").symlink_to(private)
    with pytest.raises(ValueError, match=f"{folder / 'notes' / 'link.md'} is a link to {private}"):
        push_model_folder(folder, "me/m", token="hf_unused", endpoint="http://127.0.0.1:9", extra_files=["notes"])


def test_an_item_title_too_long_for_the_prompt_names_the_external_id(workspace, tmp_path, capsys):
    model = copy_model(workspace, tmp_path)
    catalog_file = model / "item_catalog.json"
    catalog = json.loads(catalog_file.read_text(encoding="utf-8"))
    catalog["titles"][1] = " ".join(["word"] * 3000)
    catalog_file.write_text(json.dumps(catalog), encoding="utf-8")
    cli_error(["recommend", "--model", model, "--history", workspace["item"]], capsys,
              f"The item prompt of item {catalog['external_ids'][1]!r} (internal id 2, a title of 14,999 characters)",
              "shorten its title or raise max_prompt_length")
