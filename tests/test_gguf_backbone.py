"""GGUF backbones: a GGUF checkpoint is de-quantised once into a plain transformers folder (`convert_gguf_backbone`),
and LLM-SRec trains, saves and reloads on that folder with unchanged scores."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_HEAD_SIZES, TINY_TITLES
from gguf_files import write_tiny_llama_gguf
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from llm_srec import LLMSRecConfig, LLMSRecForRecommendation, LLMSRecProcessor, SASRecConfig, SASRecModel
from llm_srec.backbones import convert_gguf_backbone, gguf_backbone_folder
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.hub import write_model_card
from llm_srec.training.pipeline import build_llm_srec

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def gguf_folder(tmp_path_factory, tiny_backbone_dir):
    """A folder holding ``tiny.gguf``: the tiny Llama test backbone written as a llama.cpp-style GGUF file."""
    folder = tmp_path_factory.mktemp("gguf-source")
    write_tiny_llama_gguf(tiny_backbone_dir("llama"), folder / "tiny.gguf")
    return folder


@pytest.fixture(scope="module")
def converted(gguf_folder, tmp_path_factory):
    return convert_gguf_backbone(gguf_folder, "tiny.gguf", tmp_path_factory.mktemp("converted"))


def test_the_converted_folder_holds_the_gguf_weights_and_tokenizer_and_names_its_source(
    gguf_folder, converted, tiny_backbone_dir
):
    direct = AutoModelForCausalLM.from_pretrained(gguf_folder, gguf_file="tiny.gguf").state_dict()
    plain = AutoModelForCausalLM.from_pretrained(converted).state_dict()
    assert plain.keys() == direct.keys()
    assert all(torch.equal(plain[name], direct[name]) for name in direct)
    original = AutoModelForCausalLM.from_pretrained(tiny_backbone_dir("llama")).state_dict()
    # Two matrices were stored Q8_0: de-quantised they are close to, not equal to, the original weights.
    torch.testing.assert_close(plain["model.layers.0.mlp.up_proj.weight"],
                               original["model.layers.0.mlp.up_proj.weight"], atol=0.02, rtol=0)
    torch.testing.assert_close(plain["model.layers.1.self_attn.q_proj.weight"],
                               original["model.layers.1.self_attn.q_proj.weight"])
    text = "Item No.1, Time: 2021-03-04, " + TINY_TITLES[0]
    assert AutoTokenizer.from_pretrained(converted)(text).input_ids == AutoTokenizer.from_pretrained(
        tiny_backbone_dir("llama"))(text).input_ids
    record = json.loads((converted / "gguf_source.json").read_text())
    assert record == {"source": str(gguf_folder), "gguf_file": "tiny.gguf", "dequantized_to": "float32"}


def test_llm_srec_trains_saves_and_reloads_on_a_converted_gguf_backbone(
    converted, tiny_catalog, tiny_sasrec_config, ordered_task, make_training_batch, tmp_path
):
    config = LLMSRecConfig.from_backbone(str(converted), sasrec_config=tiny_sasrec_config, **TINY_HEAD_SIZES)
    processor = LLMSRecProcessor.from_config(config, AutoTokenizer.from_pretrained(converted), tiny_catalog)
    torch.manual_seed(0)
    model = LLMSRecForRecommendation(config, llm=AutoModel.from_pretrained(converted),
                                     sasrec=SASRecModel(tiny_sasrec_config), processor=processor)
    batch = make_training_batch(model, **ordered_task)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    assert losses[-1] < losses[0]
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["llm_name_or_path"] == str(converted)

    histories = [[1, 2, 3], [10, 11]]
    loaded = LLMSRecForRecommendation.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_users(**loaded.processor(histories)),
                                   model.encode_users(**model.processor(histories)))
        torch.testing.assert_close(loaded.refresh_item_index(), model.refresh_item_index())
    got, want = loaded.recommend([["I00", "I01"]], k=4)[0], model.recommend([["I00", "I01"]], k=4)[0]
    assert got.item_ids == want.item_ids
    card = str(write_model_card(tmp_path))
    source = record_source(converted)
    assert f"Its weights are the GGUF file `tiny.gguf` of `{source}`, de-quantised to float32." in card


def record_source(converted) -> str:
    return json.loads((converted / "gguf_source.json").read_text())["source"]


def test_without_the_gguf_package_the_conversion_names_it(gguf_folder, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"needs the `gguf` package: pip install gguf"):
        convert_gguf_backbone(gguf_folder, "tiny.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_gguf_folder_is_converted_once_and_reused(gguf_folder, tmp_path, monkeypatch):
    first = gguf_backbone_folder(gguf_folder, "tiny.gguf", convert_dir=tmp_path)
    assert first.parent == tmp_path and first.name.startswith("tiny-")
    assert json.loads((first / "gguf_source.json").read_text())["gguf_file"] == "tiny.gguf"
    assert [path.name for path in tmp_path.iterdir()] == [first.name]  # no staging folder left behind

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr("llm_srec.backbones.convert_gguf_backbone", no_second_conversion)
    assert gguf_backbone_folder(gguf_folder, "tiny.gguf", convert_dir=tmp_path) == first


def test_build_llm_srec_takes_a_gguf_file_in_the_backbone_options(gguf_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf-home"))
    data = build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=40, num_items=30)))
    teacher = SASRecModel(SASRecConfig(num_items=data.num_items, hidden_size=16, max_position_embeddings=20))
    model = build_llm_srec(data, teacher, gguf_folder, config_kwargs=TINY_HEAD_SIZES,
                           backbone_kwargs={"gguf_file": "tiny.gguf"})
    backbone = Path(model.config.llm_name_or_path)
    assert backbone.parent == tmp_path / "hf-home" / "llm_srec" / "gguf"
    assert json.loads((backbone / "gguf_source.json").read_text())["gguf_file"] == "tiny.gguf"
    direct = AutoModel.from_pretrained(gguf_folder, gguf_file="tiny.gguf").state_dict()
    assert all(torch.equal(model.llm.state_dict()[name], tensor) for name, tensor in direct.items())
