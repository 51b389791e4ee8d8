"""The item index is saved with the model, reused by `recommend` and evaluation, and never used when stale."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from llm_srec.evaluation import evaluate_ranking
from llm_srec.modeling import LLMSRecForRecommendation
from llm_srec.modeling.item_index_llm_srec import ITEM_INDEX_NAME, item_index_fingerprint, load_item_index

HISTORIES = [["I01", "I02", "I03"], ["I09", "I04"], ["I15"]]


class _NoBackbone:
    """Context manager that fails the test if the backbone runs (the index must be reused)."""

    def __init__(self, model: LLMSRecForRecommendation) -> None:
        self.model = model
        self.items_encoded = 0

    def __enter__(self) -> _NoBackbone:
        self.original = self.model.encode_items

        def counting(*args, **kwargs):
            self.items_encoded += int(args[0].shape[0])
            return self.original(*args, **kwargs)

        self.model.encode_items = counting
        return self

    def __exit__(self, *exc) -> None:
        del self.model.encode_items


def _load(folder: Path, llm) -> LLMSRecForRecommendation:
    return LLMSRecForRecommendation.from_pretrained(folder, llm=llm)


def _saved_with_index(make_tiny_model, tmp_path: Path) -> tuple[LLMSRecForRecommendation, Path]:
    model = make_tiny_model("llama")
    model.refresh_item_index(batch_size=5)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return model, folder


def test_saved_index_is_reused_by_recommend(make_tiny_model, tmp_path):
    model, folder = _saved_with_index(make_tiny_model, tmp_path)
    index, fingerprint = load_item_index(folder / ITEM_INDEX_NAME)
    assert fingerprint == item_index_fingerprint(model)
    torch.testing.assert_close(index, model.item_index)

    loaded = _load(folder, model.llm)
    assert loaded.item_index is not None
    expected = model.recommend(HISTORIES, k=4)
    with _NoBackbone(loaded) as watch:
        got = loaded.recommend(HISTORIES, k=4)
    assert watch.items_encoded == 0
    assert [r.item_ids for r in got] == [r.item_ids for r in expected]
    torch.testing.assert_close(torch.tensor([r.scores for r in got]), torch.tensor([r.scores for r in expected]))


def test_evaluation_reuses_the_index_with_the_same_metrics(make_tiny_model, tmp_path, ordered_task):
    model, folder = _saved_with_index(make_tiny_model, tmp_path)
    split = Dataset.from_dict({
        "user_index": list(range(len(ordered_task["histories"]))),
        "history": ordered_task["histories"],
        "history_timestamps": [[] for _ in ordered_task["histories"]],
        "target": ordered_task["targets"],
    })
    fresh = make_tiny_model("llama")
    fresh.load_state_dict(model.state_dict())
    expected = evaluate_ranking(fresh, split, 16, num_negatives=5, show_progress=False)
    loaded = _load(folder, model.llm)
    with _NoBackbone(loaded) as watch:
        got = evaluate_ranking(loaded, split, 16, num_negatives=5, show_progress=False)
    assert watch.items_encoded == 0
    assert got.keys() == expected.keys()
    for protocol in expected:
        for metric, value in expected[protocol].items():
            assert got[protocol][metric] == pytest.approx(value, abs=1e-6), (protocol, metric)


def test_stale_index_is_detected_and_rebuilt(make_tiny_model, tmp_path, caplog):
    model, folder = _saved_with_index(make_tiny_model, tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["item_head.0.weight"] = weights["item_head.0.weight"] + 0.5
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING):
        loaded = _load(folder, model.llm)
    assert "stale item index" in caplog.text
    assert loaded.item_index is None
    with _NoBackbone(loaded) as watch:
        loaded.recommend(HISTORIES, k=4)
    assert watch.items_encoded == 16  # rebuilt from the backbone
    assert not torch.allclose(loaded.item_index, model.item_index)


def test_index_is_dropped_when_weights_or_catalog_change(make_tiny_model, make_tiny_processor, tmp_path):
    model, _ = _saved_with_index(make_tiny_model, tmp_path)
    assert model.item_index is not None
    with torch.no_grad():
        model.item_head[0].bias.add_(1.0)  # e.g. an optimizer step
    assert model.item_index is None
    model.refresh_item_index()
    model.processor.item_catalog = model.processor.item_catalog.__class__(
        model.processor.item_catalog.external_ids, [f"Other {t}" for t in model.processor.item_catalog.titles]
    )
    assert model.item_index is None
    model.refresh_item_index()
    model.train()
    assert model.item_index is None


def test_save_without_index_removes_an_old_index(make_tiny_model, tmp_path):
    model, folder = _saved_with_index(make_tiny_model, tmp_path)
    model.train().eval()
    model.save_pretrained(folder)
    assert not (folder / ITEM_INDEX_NAME).exists()


def test_broken_index_file_is_named_and_rebuilt(make_tiny_model, tmp_path, caplog):
    model, folder = _saved_with_index(make_tiny_model, tmp_path)
    (folder / ITEM_INDEX_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="item_index.safetensors is not a valid item index"):
        load_item_index(folder / ITEM_INDEX_NAME)
    with caplog.at_level(logging.WARNING):
        loaded = _load(folder, model.llm)
    assert "is not a valid item index" in caplog.text and loaded.item_index is None
    torch.testing.assert_close(loaded.refresh_item_index(batch_size=5), model.item_index)
