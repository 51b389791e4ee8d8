"""The command line with a GGUF backbone: `convert-gguf` writes a plain folder; `train --backbone SRC --gguf-file F`
converts once into the cache, trains, and `recommend` works from the saved folder; mistakes are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf_files import write_tiny_llama_gguf
from transformers import AutoModelForCausalLM

from llm_srec import build_tiny_backbone
from llm_srec.cli import main
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def gguf_workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf-cli")
    config = SyntheticConfig(num_users=30, num_items=20, min_length=5, max_length=7, cycle_length=10, noise=0.1)
    data = build_recommendation_data(generate_synthetic(config))
    data.save_to_disk(root / "data")
    build_tiny_backbone("llama", data.catalog.titles, root / "backbone", seed=0)
    (root / "gguf").mkdir()
    write_tiny_llama_gguf(root / "backbone", root / "gguf" / "tiny.gguf")
    assert main(["pretrain-sasrec", "--data", str(root / "data"), "--output-dir", str(root / "sasrec"), "--epochs", "1",
                 "--hidden-size", "16", "--num-layers", "1", "--maxlen", "10", "--eval-negatives", "10",
                 "--no-progress"]) == 0
    return {"root": root, "data": root / "data", "sasrec": root / "sasrec", "gguf": root / "gguf"}


def test_convert_gguf_writes_a_plain_folder_that_names_its_source(gguf_workspace, tmp_path, capsys):
    output = tmp_path / "plain"
    assert main(["convert-gguf", str(gguf_workspace["gguf"]), "--gguf-file", "tiny.gguf", "--output-dir",
                 str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    assert AutoModelForCausalLM.from_pretrained(output).config.model_type == "llama"
    assert json.loads((output / "gguf_source.json").read_text())["gguf_file"] == "tiny.gguf"
    assert main(["convert-gguf", str(gguf_workspace["gguf"]), "--gguf-file", "tiny.gguf", "--output-dir",
                 str(output)]) == 2
    assert "already holds a model" in capsys.readouterr().err


def test_train_on_a_gguf_file_then_recommend(gguf_workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf-home"))
    model = tmp_path / "model"
    assert main(["train", "--data", str(gguf_workspace["data"]), "--sasrec", str(gguf_workspace["sasrec"]),
                 "--backbone", str(gguf_workspace["gguf"]), "--gguf-file", "tiny.gguf", "--output-dir", str(model),
                 "--max-steps", "2", "--batch-size", "8", "--eval-fraction", "0.5", "--eval-negatives", "10",
                 "--history-length", "5", "--embedding-size", "16", "--head-hidden-size", "32",
                 "--cf-hidden-size", "16", "--no-progress"]) == 0
    backbone = Path(json.loads((model / "config.json").read_text())["llm_name_or_path"])
    assert backbone.parent == tmp_path / "hf-home" / "llm_srec" / "gguf"
    assert "Its weights are the GGUF file `tiny.gguf`" in (model / "README.md").read_text(encoding="utf-8")
    capsys.readouterr()
    history = json.loads((gguf_workspace["data"] / "catalog" / "item_catalog.json").read_text())["external_ids"][:3]
    assert main(["recommend", "--model", str(model), "--history", *history, "-k", "3"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.strip()]) >= 3


@pytest.mark.parametrize("argv, message", [
    (["train", "--gguf-file", "missing.gguf"], "--gguf-file missing.gguf: no such file in --backbone"),
    (["convert-gguf", "{gguf}", "--gguf-file", "missing.gguf", "--output-dir", "{out}"],
     "--gguf-file missing.gguf: no such file in"),
])
def test_gguf_mistakes_are_one_line(gguf_workspace, tmp_path, argv, message, capsys):
    if argv[0] == "train":
        argv = ["train", "--data", str(gguf_workspace["data"]), "--sasrec", str(gguf_workspace["sasrec"]),
                "--backbone", str(gguf_workspace["gguf"]), "--output-dir", str(tmp_path / "m"), *argv[1:]]
    argv = [part.format(gguf=gguf_workspace["gguf"], out=tmp_path / "o") for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
