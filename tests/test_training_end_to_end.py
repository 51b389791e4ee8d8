"""End to end through the pipeline functions: synthetic data -> SASRec -> LLM-SRec on a random-initialised tiny
backbone -> test ranking. LLM-SRec must beat a random ranker by a wide margin under both protocols, and the saved
folders must reload to the same numbers."""

from __future__ import annotations

import json

import pytest

from llm_srec import LLMSRecForRecommendation, SASRecModel, build_tiny_backbone
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.evaluation import FULL_CATALOG, RankingEvaluator, sampled_protocol
from llm_srec.training import LLMSRecTrainingArguments, SASRecTrainingArguments
from llm_srec.training.pipeline import evaluate_model, load_model, pretrain_sasrec, train_llm_srec

NEGATIVES = 20


@pytest.mark.slow
def test_llm_srec_beats_a_random_ranker_by_a_wide_margin_under_both_protocols(tmp_path):
    config = SyntheticConfig(num_users=150, num_items=40, min_length=6, max_length=12, cycle_length=10, noise=0.1)
    data = build_recommendation_data(generate_synthetic(config))
    common = dict(num_eval_negatives=NEGATIVES, max_eval_users=None, save_total_limit=1, use_cpu=True,
                  disable_tqdm=True, report_to="none", seed=0)
    sasrec = pretrain_sasrec(
        data, tmp_path / "sasrec",
        SASRecTrainingArguments(output_dir=str(tmp_path / "sasrec" / "checkpoints"), num_train_epochs=20,
                                per_device_train_batch_size=32, **common),
        config={"hidden_size": 32, "num_hidden_layers": 1, "max_position_embeddings": 16},
    )
    backbone = build_tiny_backbone("llama", data.catalog.titles, tmp_path / "backbone", hidden_size=64, seed=0)
    model = train_llm_srec(
        data, sasrec, backbone, tmp_path / "llm-srec",
        LLMSRecTrainingArguments(output_dir=str(tmp_path / "llm-srec" / "checkpoints"), num_train_epochs=2,
                                 learning_rate=3e-3, train_mode="all", per_device_eval_batch_size=64,
                                 eval_every_epoch_fraction=0.5, early_stopping_patience=None, **common),
        config_kwargs={"head_hidden_size": 64, "embedding_size": 32, "cf_hidden_size": 32, "history_length": 5},
        model_card_kwargs={"backbone_random_init": True},
    )
    random = RankingEvaluator(data.splits["test"], data.num_items, num_negatives=NEGATIVES).random_ranker()
    llm = json.loads((tmp_path / "llm-srec" / "metrics.json").read_text(encoding="utf-8"))
    teacher = json.loads((tmp_path / "sasrec" / "metrics.json").read_text(encoding="utf-8"))
    sampled = sampled_protocol(NEGATIVES, 0)
    assert set(llm) == set(teacher) == {sampled, FULL_CATALOG}
    for protocol, factor in ((sampled, 2.0), (FULL_CATALOG, 3.0)):
        assert llm[protocol]["num_users"] == 150
        assert llm[protocol]["NDCG@10"] > factor * random[protocol]["NDCG@10"], (protocol, llm, random)
        assert llm[protocol]["HR@10"] > 1.5 * random[protocol]["HR@10"], (protocol, llm, random)
        assert teacher[protocol]["NDCG@10"] > 3.0 * random[protocol]["NDCG@10"]

    # the saved folders are the models: reloading them gives the recorded test metrics
    reloaded = load_model(tmp_path / "llm-srec")
    assert isinstance(reloaded, LLMSRecForRecommendation)
    assert evaluate_model(reloaded, data, "test", num_negatives=NEGATIVES, show_progress=False) == llm
    assert evaluate_model(model, data, "test", num_negatives=NEGATIVES, batch_size=7, show_progress=False) == llm
    teacher_model = load_model(tmp_path / "sasrec")
    assert isinstance(teacher_model, SASRecModel)
    assert evaluate_model(teacher_model, data, "test", num_negatives=NEGATIVES, show_progress=False) == teacher
