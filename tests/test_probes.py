"""Sequence-understanding probes: they must see order where a model uses it, and nothing where it cannot.

The data is the synthetic generator's successor walk (the next item is the successor of the LAST item), so an
order-aware SASRec loses accuracy when histories are shuffled, while the order-blind control cannot change at all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from llm_srec.data import (
    LLMSRecCollator,
    SASRecCollator,
    SyntheticConfig,
    build_recommendation_data,
    generate_synthetic,
    shuffle_histories,
)
from llm_srec.evaluation import evaluate_ranking
from llm_srec.evaluation.probe_report import format_cell, format_change, render_report
from llm_srec.training.probe_training import recipe_config_kwargs, shuffled_training_data
from llm_srec.training.recipes import ABLATIONS, ablation_config_overrides, ablation_name
from llm_srec.evaluation.probes import (
    COLD,
    NON_TRANSITION,
    REPRESENTATION_SIMILARITY,
    SHUFFLED_INFERENCE,
    TRANSITION,
    TRANSITION_BREAKDOWN,
    WARM,
    WARM_COLD_BREAKDOWN,
    MeanEmbeddingControl,
    ProbeSubject,
    RepresentationEncoder,
    change_ratio,
    compare_metrics,
    run_probes,
    transition_scores,
    warm_cold_items,
)
from llm_srec.modeling import LLMSRecConfig, SASRecConfig, SASRecModel

NEGATIVES = 20
SAMPLED = f"sampled(1+{NEGATIVES}, seed=0)"
FULL = "full-catalog"
PROMPT_ENTRY = re.compile(r'Item No\.(\d+), Time: (\d{4}-\d\d-\d\d), "([^"]*)"\[HistoryEmb\]')


def train_sasrec(data, epochs: int = 30, hidden_size: int = 32, seed: int = 0) -> SASRecModel:
    """A small SASRec fitted with the package's collator (a plain loop: seconds, not the Trainer's minutes)."""
    torch.manual_seed(seed)
    config = SASRecConfig(num_items=data.num_items, hidden_size=hidden_size, max_position_embeddings=20,
                          num_hidden_layers=1, num_attention_heads=1)
    model = SASRecModel(config).train()
    collator = SASRecCollator(data.num_items, maxlen=20, seed=seed)
    rows = data.splits["train"].to_list()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(epochs):
        collator.set_epoch(epoch)
        for start in range(0, len(rows), 100):
            loss = model(**collator(rows[start:start + 100])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def ordered_data():
    config = SyntheticConfig(num_users=300, num_items=60, min_length=6, max_length=14, noise=0.1, cycle_length=20)
    return build_recommendation_data(generate_synthetic(config))


@pytest.fixture(scope="module")
def ordered_sasrec(ordered_data) -> SASRecModel:
    return train_sasrec(ordered_data)


@pytest.fixture(scope="module")
def sasrec_probe(ordered_data, ordered_sasrec) -> dict:
    subjects = [
        ProbeSubject("SASRec", ordered_sasrec),
        ProbeSubject("control", MeanEmbeddingControl.from_sasrec(ordered_sasrec)),
    ]
    return run_probes(subjects, ordered_data, shuffle_seed=0, num_negatives=NEGATIVES, eval_seed=0)


def test_sasrec_loses_accuracy_under_shuffled_inference(sasrec_probe, ordered_data, ordered_sasrec):
    """SASRec reads order on this data: shuffling the test histories must cost it a large part of its accuracy."""
    comparison = sasrec_probe[SHUFFLED_INFERENCE]["SASRec"]
    for protocol in (SAMPLED, FULL):
        ndcg = comparison[protocol]["NDCG@10"]
        assert ndcg["original"] > 0.6, ndcg
        assert ndcg["shuffled"] < 0.75 * ndcg["original"], ndcg
        assert ndcg["change"] == pytest.approx((ndcg["shuffled"] - ndcg["original"]) / ndcg["original"])
        assert ndcg["change"] < -0.25
    # the probe's numbers are the evaluation API's numbers on the shuffled test split
    direct = evaluate_ranking(ordered_sasrec, shuffle_histories(ordered_data.splits["test"], 0), ordered_data.num_items,
                              num_negatives=NEGATIVES, show_progress=False)
    assert comparison[SAMPLED]["HR@10"]["shuffled"] == pytest.approx(direct[SAMPLED]["HR@10"])
    assert comparison[FULL]["NDCG@20"]["shuffled"] == pytest.approx(direct[FULL]["NDCG@20"])


def test_sasrec_representation_changes_control_does_not(sasrec_probe):
    similarity = sasrec_probe[REPRESENTATION_SIMILARITY]
    assert similarity["SASRec"]["O_u"]["cosine"] < 0.85
    assert similarity["SASRec"]["O_u"]["std"] > 0.01
    assert similarity["control"]["mean item embedding"]["cosine"] == pytest.approx(1.0, abs=1e-9)
    assert similarity["control"]["mean item embedding"]["std"] == pytest.approx(0.0, abs=1e-9)


def test_order_blind_control_shows_no_change(sasrec_probe):
    """The control calibrates the probe: identical scores, a 0% change, in every protocol and breakdown group."""
    for protocol in (SAMPLED, FULL):
        for cell in sasrec_probe[SHUFFLED_INFERENCE]["control"][protocol].values():
            assert cell["original"] == cell["shuffled"]
            assert cell["change"] == 0.0
        assert sasrec_probe[SHUFFLED_INFERENCE]["control"][protocol]["HR@10"]["original"] > 0.3
    for section in (TRANSITION_BREAKDOWN, WARM_COLD_BREAKDOWN):
        for comparison in sasrec_probe[section]["control"].values():
            for cells in comparison.values():
                assert all(cell["original"] == cell["shuffled"] for cell in cells.values())


def test_shuffled_test_histories_really_differ(ordered_data):
    """Guards the probes against a no-op shuffle: most histories change order, none changes its items or target."""
    test = ordered_data.splits["test"]
    shuffled = shuffle_histories(test, 0)
    moved = [a != b for a, b in zip(test["history"], shuffled["history"])]
    assert np.mean(moved) > 0.9
    assert [sorted(h) for h in test["history"]] == [sorted(h) for h in shuffled["history"]]
    assert test["target"] == shuffled["target"]
    assert test["history_timestamps"] == shuffled["history_timestamps"]


def test_breakdown_groups_partition_the_users(sasrec_probe):
    """Group sizes follow the thresholds, and group metrics recombine into the overall metric."""
    setup = sasrec_probe["setup"]
    assert setup["users"] == 300
    assert setup["transition_users"] == 150 and setup["non_transition_users"] == 150
    assert setup["warm_items"] == setup["cold_items"] == 21  # round(0.35 * 60)
    assert 0 < setup["warm_target_users"] < 300 and 0 < setup["cold_target_users"] < 300
    for view in ("original", "shuffled"):
        groups = sasrec_probe[TRANSITION_BREAKDOWN]["SASRec"]
        combined = (groups[TRANSITION][SAMPLED]["NDCG@10"][view] * setup["transition_users"]
                    + groups[NON_TRANSITION][SAMPLED]["NDCG@10"][view] * setup["non_transition_users"]) / setup["users"]
        assert combined == pytest.approx(sasrec_probe[SHUFFLED_INFERENCE]["SASRec"][SAMPLED]["NDCG@10"][view])
    assert set(sasrec_probe[WARM_COLD_BREAKDOWN]["SASRec"]) == {WARM, COLD}
    assert set(sasrec_probe[WARM_COLD_BREAKDOWN]["SASRec"][WARM][SAMPLED]) == {"NDCG@10", "HR@10"}


def test_transition_scores_use_global_training_counts():
    training = [[1, 2, 3], [1, 2, 4], [4, 1]]
    # (1->2) occurs twice, (2->3), (2->4), (4->1) once; (3->1) never
    scores = transition_scores([[1, 2, 3], [3, 1], [5], [4, 1, 2]], training, num_items=5)
    np.testing.assert_allclose(scores, [1.5, 0.0, 0.0, 1.5])


def test_warm_and_cold_items_are_the_extreme_35_percent():
    counts = np.array([0, 9, 1, 5, 0, 7, 3, 8, 2, 6, 4])  # index 0 is padding
    warm, cold = warm_cold_items(counts)
    assert warm.tolist() == [1, 5, 7, 9]  # counts 9, 7, 8, 6: the top 4 (= round(0.35 * 10)) items
    assert cold.tolist() == [2, 4, 6, 8]  # counts 1, 0, 3, 2: the bottom 4
    tied = np.array([0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    assert warm_cold_items(tied)[0].tolist() == [1, 2, 3, 4]  # ties broken by id: deterministic


def test_change_ratio_and_comparison():
    assert change_ratio(0.3388, 0.3224) == pytest.approx(-0.0484, abs=1e-4)
    assert change_ratio(0.0, 0.1) is None
    comparison = compare_metrics(
        {"p": {"NDCG@10": 0.5, "HR@10": 0.0, "num_users": 3.0}},
        {"p": {"NDCG@10": 0.25, "HR@10": 0.5, "num_users": 3.0}},
    )
    assert comparison == {"p": {"NDCG@10": {"original": 0.5, "shuffled": 0.25, "change": -0.5},
                                "HR@10": {"original": 0.0, "shuffled": 0.5}}}


def test_change_is_printed_as_the_paper_prints_it():
    assert format_change(-0.0484) == "(−4.84%)"
    assert format_change(0.0271) == "(+2.71%)"
    assert format_change(None) == "(n/a)"
    assert format_cell({"original": 0.3388, "shuffled": 0.3224, "change": -0.04840}) == "0.3388 / 0.3224 (−4.84%)"


def test_report_names_protocols_and_changes(sasrec_probe):
    report = render_report(sasrec_probe)
    assert f"Protocol: `{SAMPLED}`" in report and f"Protocol: `{FULL}`" in report
    cell = sasrec_probe[SHUFFLED_INFERENCE]["SASRec"][SAMPLED]["NDCG@10"]
    assert f"| SASRec | {format_cell(cell)} |" in report
    assert "| control | `mean item embedding` | 1.0000 | 0.0000 |" in report
    assert "## Shuffled training" not in report  # no subject has a shuffled-training model


# ------------------------------------------------------------------------------------ shuffled training data
def test_shuffled_training_prompts_keep_numbers_and_times_in_place(tiny_processor):
    """Only titles (and with them the injected embeddings) move; "Item No.k, Time: ..." slots and the target stay."""
    config = SyntheticConfig(num_users=40, num_items=16, min_length=6, max_length=14, noise=0.1, cycle_length=8)
    data = build_recommendation_data(generate_synthetic(config))
    tiny_processor.item_catalog = data.catalog
    shuffled = shuffled_training_data(data, seed=3)
    original_rows, shuffled_rows = data.splits["train"].to_list(), shuffled.splits["train"].to_list()
    assert len(original_rows) == len(shuffled_rows) == 40
    reordered = 0
    for original, permuted in zip(original_rows, shuffled_rows):
        assert permuted["target"] == original["target"]
        assert permuted["target_timestamp"] == original["target_timestamp"]
        render = tiny_processor.render_user_prompt
        before = PROMPT_ENTRY.findall(render(original["history"], original["history_timestamps"]))
        after = PROMPT_ENTRY.findall(render(permuted["history"], permuted["history_timestamps"]))
        assert [(number, time) for number, time, _ in after] == [(number, time) for number, time, _ in before]
        assert [number for number, _, _ in before] == [str(k) for k in range(1, len(before) + 1)]
        times = [time for _, time, _ in before]
        assert times == sorted(times)  # the timeline still reads chronologically
        titles = [data.catalog.title(item) for item in permuted["history"][-tiny_processor.history_length:]]
        assert [title for _, _, title in after] == titles
        assert sorted(permuted["history"]) == sorted(original["history"])
        reordered += permuted["history"] != original["history"]
    assert reordered >= 36
    # the training batch carries the shuffled ids into the [HistoryEmb] slots and the teacher's input
    batch = LLMSRecCollator(tiny_processor, sasrec_maxlen=20, num_negatives=3, seed=0)(shuffled_rows[:4])
    for row, permuted in enumerate(shuffled_rows[:4]):
        slots = batch["history_item_ids"][row]
        assert slots[slots > 0].tolist() == permuted["history"][-tiny_processor.history_length:]
        teacher = batch["sasrec_input_ids"][row]
        assert teacher[teacher > 0].tolist() == permuted["history"][-20:]
        assert batch["candidate_item_ids"][row, 0] == permuted["target"]
    # shuffled once, seeded: the same seed gives the same data, validation and test are untouched
    assert shuffled_training_data(data, seed=3).splits["train"]["history"] == shuffled.splits["train"]["history"]
    assert shuffled_training_data(data, seed=4).splits["train"]["history"] != shuffled.splits["train"]["history"]
    for split in ("validation", "test"):
        assert shuffled.splits[split]["history"] == data.splits[split]["history"]
    assert "shuffled" in shuffled.info["name"]


# ------------------------------------------------------------------------------------------------ ablations
@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablations_are_config_switches(name, make_tiny_model, make_training_batch, ordered_task):
    overrides = ablation_config_overrides(name)
    config = LLMSRecConfig(**overrides)
    assert ablation_name(config) == name
    model = make_tiny_model("llama", **overrides)
    assert ablation_name(model.config) == name
    assert recipe_config_kwargs(model.config) | overrides == recipe_config_kwargs(model.config)
    batch = make_training_batch(model, ordered_task["histories"][:4], ordered_task["targets"][:4],
                                ordered_task["negatives"][:4])
    output = model(**batch)
    assert output.retrieval_loss is not None
    assert (output.uniformity_loss is None) == (overrides.get("uniformity_loss_weight") == 0.0)
    assert (output.distillation_loss is None) == (overrides.get("distillation_loss_weight") == 0.0)


def test_ablation_names_are_exact():
    assert ablation_name(LLMSRecConfig()) is None
    assert ablation_name(LLMSRecConfig(uniformity_loss_weight=0.5)) is None
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_config_overrides("no_retrieval")
    ablation_config_overrides("no_uniformity")["uniformity_loss_weight"] = 1.0
    assert ABLATIONS["no_uniformity"] == {"uniformity_loss_weight": 0.0}


# ------------------------------------------------------------------------------------ LLM-SRec representations
def test_llm_srec_representations_are_the_models_and_see_the_shuffle(tiny_model, ordered_task):
    """h_U and f_user(h_U) come from one forward; f_user(h_U) is what the model ranks with, and a shuffled history
    (titles/embeddings moved, numbers/times kept) gives a different h_U, while the same history gives the same."""
    encoder = RepresentationEncoder(tiny_model, batch_size=3)
    histories = ordered_task["histories"][:5]
    timestamps = [[1_600_000_000 + 86_400 * step for step in range(len(h))] for h in histories]
    vectors = encoder.representations(histories, timestamps)
    assert vectors["h_U"].shape == (5, tiny_model.config.llm_config.hidden_size)
    batch = tiny_model.processor(histories, timestamps=timestamps)
    with torch.no_grad():
        expected = tiny_model.encode_users(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
    torch.testing.assert_close(encoder.encode_users(histories, timestamps), expected, rtol=1e-5, atol=1e-5)
    shuffled = [list(reversed(h)) for h in histories]
    moved = encoder.representations(shuffled, timestamps)
    assert not torch.allclose(moved["h_U"], vectors["h_U"])
    assert not torch.allclose(moved["f_user(h_U)"], vectors["f_user(h_U)"])
    again = RepresentationEncoder(tiny_model, batch_size=5).representations(histories, timestamps)
    torch.testing.assert_close(again["h_U"], vectors["h_U"], rtol=1e-5, atol=1e-5)
