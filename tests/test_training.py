"""SASRecTrainer / LLMSRecTrainer: paper defaults, validation every fraction of an epoch, ranking metrics in the
logs, checkpoints without backbone or pickle, exact resumption, epoch-keyed negatives, lr decay, early stopping,
the all-positions mode and activation checkpointing."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import TrainerState

from conftest import TINY_HEAD_SIZES
from llm_srec import SASRecConfig, SASRecModel
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.training import (
    LLMSRecTrainer,
    LLMSRecTrainingArguments,
    SASRecTrainer,
    SASRecTrainingArguments,
)
from llm_srec.training.pipeline import build_llm_srec, history_cut_summary
from llm_srec.training.sanity import random_ranking_expectation, untrained_run_warnings

NEGATIVES = 10
SAMPLED = f"sampled(1+{NEGATIVES}, seed=0)"
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt"}


@pytest.fixture(scope="module")
def small_data():
    config = SyntheticConfig(num_users=40, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    return build_recommendation_data(generate_synthetic(config))


def make_teacher(num_items: int = 30) -> SASRecModel:
    torch.manual_seed(0)
    return SASRecModel(SASRecConfig(num_items=num_items, hidden_size=16, num_hidden_layers=1, max_position_embeddings=12))


def make_model(data, tiny_backbone_dir, item_prefix_cache_mb: int = 1024, **config):
    model = build_llm_srec(data, make_teacher(data.num_items), tiny_backbone_dir("llama"),
                           config_kwargs={**TINY_HEAD_SIZES, "history_length": 5, **config}, seed=0)
    model.item_prefix_cache_mb = item_prefix_cache_mb
    return model


def llm_args(output_dir: Path, **overrides) -> LLMSRecTrainingArguments:
    settings = dict(
        output_dir=str(output_dir), num_train_epochs=2, per_device_train_batch_size=8, per_device_eval_batch_size=16,
        learning_rate=1e-3, num_eval_negatives=NEGATIVES, max_eval_users=None, eval_every_epoch_fraction=0.4,
        early_stopping_patience=None, save_total_limit=None, use_cpu=True, disable_tqdm=True, report_to="none",
        seed=0, logging_steps=1,
    )
    settings.update(overrides)
    return LLMSRecTrainingArguments(**settings)


def assert_no_pickles(folder: Path) -> None:
    """No file with a pickle suffix, and no file in torch.save's zip or plain pickle format."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert path.suffix not in PICKLE_SUFFIXES, path
        head = path.read_bytes()[:4]
        assert head != b"PK\x03\x04" and not head.startswith(b"\x80"), path


def ranking(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if "/" in key}


def test_arguments_carry_the_paper_defaults():
    llm = LLMSRecTrainingArguments(output_dir="unused")
    assert (llm.learning_rate, llm.adam_beta1, llm.adam_beta2, llm.weight_decay) == (1e-4, 0.9, 0.98, 0.0)
    assert (llm.per_device_train_batch_size, llm.num_train_epochs, llm.eval_every_epoch_fraction) == (20, 10, 0.1)
    assert llm.metric_for_best_model == "sampled(1+99, seed=0)/HR@10" and llm.greater_is_better
    assert (llm.early_stopping_patience, llm.max_eval_users, llm.train_mode) == (10, 10_000, "last")
    assert llm.remove_unused_columns is False and llm.load_best_model_at_end and llm.lr_decay_per_evaluation is None
    assert str(llm.lr_scheduler_type.value if hasattr(llm.lr_scheduler_type, "value") else llm.lr_scheduler_type) == "constant"
    sasrec = SASRecTrainingArguments(output_dir="unused", num_eval_negatives=49, eval_seed=3)
    assert (sasrec.learning_rate, sasrec.adam_beta2, sasrec.per_device_train_batch_size) == (1e-3, 0.98, 128)
    assert sasrec.num_train_epochs == 200 and sasrec.metric_for_best_model == "sampled(1+49, seed=3)/NDCG@10"
    full = LLMSRecTrainingArguments(output_dir="unused", eval_protocols=["full"])
    assert full.metric_for_best_model == "full-catalog/HR@10"


def test_batches_are_pinned_only_when_an_accelerator_can_use_them(small_data, tmp_path, recwarn):
    args = SASRecTrainingArguments(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=8)
    assert args.dataloader_pin_memory == torch.accelerator.is_available()
    trainer = SASRecTrainer(make_teacher(), args, train_dataset=small_data.splits["train"],
                            eval_dataset=small_data.splits["validation"])
    loader = trainer.get_train_dataloader()
    next(iter(loader))
    if not torch.accelerator.is_available():
        assert not [warning for warning in recwarn if "pin_memory" in str(warning.message)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train_mode": "random"}, "train_mode"),
        ({"eval_protocols": ["sampled"], "metric_for_best_model": "full-catalog/HR@10"}, "not '<protocol>/<metric>'"),
        ({"eval_protocols": ["bogus"]}, "subset of"),
        ({"push_to_hub": True}, "llm-srec push"),
        ({"eval_every_epoch_fraction": 1.5}, "eval_every_epoch_fraction"),
        ({"eval_strategy": "epoch", "save_strategy": "epoch"}, "needs eval_strategy='steps'"),
        ({"load_best_model_at_end": False}, "load_best_model_at_end=True"),
    ],
)
def test_bad_arguments_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        LLMSRecTrainingArguments(output_dir="unused", **overrides)


def test_llm_srec_training_logs_ranking_metrics_and_saves_checkpoints_without_backbone_or_pickles(
    small_data, tiny_backbone_dir, tmp_path
):
    model = make_model(small_data, tiny_backbone_dir)
    trainer = LLMSRecTrainer(model, llm_args(tmp_path, lr_scheduler_type="linear"),
                             train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
                             model_card_kwargs={"data_statistics": small_data.statistics()})
    # 40 users / batch 8 = 5 steps per epoch; 40% of an epoch = 2 steps
    assert trainer.args.eval_steps == trainer.args.save_steps == 2
    trainer.train()
    history = trainer.state.log_history
    evaluations = [entry for entry in history if f"eval_{SAMPLED}/HR@10" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4, 6, 8, 10]
    for entry in evaluations:
        assert entry[f"eval_{SAMPLED}/num_users"] == 40 and entry["eval_full-catalog/num_users"] == 40
        assert 0 <= entry["eval_full-catalog/NDCG@10"] <= entry["eval_full-catalog/HR@10"] <= 1
    losses = [entry for entry in history if "loss" in entry]
    assert {"retrieval_loss", "distillation_loss", "uniformity_loss"} <= set(losses[0])
    assert losses[0]["loss"] == pytest.approx(
        losses[0]["retrieval_loss"] + losses[0]["distillation_loss"] + losses[0]["uniformity_loss"], rel=1e-4)
    assert trainer.state.best_metric == max(entry[f"eval_{SAMPLED}/HR@10"] for entry in evaluations)

    checkpoint = tmp_path / "checkpoint-4"
    names = {path.name for path in checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng_state.json", "rng_state.safetensors", "trainer_state.json", "training_args.json", "README.md",
            "item_catalog.json", "processor_config.json", "data_statistics.json"} <= names
    with safe_open(checkpoint / "model.safetensors", framework="pt") as weights:
        keys = list(weights.keys())
    assert keys and not any(key.startswith("llm.") for key in keys)
    assert any(key.startswith("sasrec.") for key in keys) and "user_out_embedding" in keys
    saved_args = json.loads((checkpoint / "training_args.json").read_text(encoding="utf-8"))
    assert saved_args["metric_for_best_model"] == f"{SAMPLED}/HR@10" and saved_args["train_mode"] == "last"
    assert "LLM-SRec" in (checkpoint / "README.md").read_text(encoding="utf-8")
    assert_no_pickles(tmp_path)


class Crash(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


class CrashAfterSave:
    def __init__(self, step: int) -> None:
        self.step = step

    def __getattr__(self, name):  # TrainerCallback's other events: nothing to do
        return lambda *args, **kwargs: None

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash


def test_llm_srec_resumed_run_ends_with_the_uninterrupted_runs_weights_and_metrics(
    small_data, tiny_backbone_dir, tmp_path
):
    def trainer(output_dir: Path, callbacks=()) -> LLMSRecTrainer:
        args = llm_args(output_dir, lr_scheduler_type="linear", warmup_steps=2)
        return LLMSRecTrainer(make_model(small_data, tiny_backbone_dir), args,
                              train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
                              callbacks=list(callbacks))

    uninterrupted = trainer(tmp_path / "a")
    uninterrupted.train()
    reference = ranking(uninterrupted.evaluate())

    killed = trainer(tmp_path / "b", [CrashAfterSave(6)])  # step 6: inside the second epoch
    with pytest.raises(Crash):
        killed.train()
    resumed = trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 10
    assert ranking(resumed.evaluate()) == reference
    expected = uninterrupted.model.checkpoint_state_dict()
    for key, value in resumed.model.checkpoint_state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)
    assert_no_pickles(tmp_path)


def test_sasrec_trainer_selects_on_validation_and_resumes_exactly(small_data, tmp_path):
    def trainer(output_dir: Path, callbacks=()) -> SASRecTrainer:
        args = SASRecTrainingArguments(
            output_dir=str(output_dir), num_train_epochs=4, per_device_train_batch_size=16,
            num_eval_negatives=NEGATIVES, use_cpu=True, disable_tqdm=True, report_to="none", seed=0,
            save_total_limit=None, lr_scheduler_type="linear",
        )
        return SASRecTrainer(make_teacher(), args, train_dataset=small_data.splits["train"],
                             eval_dataset=small_data.splits["validation"], callbacks=list(callbacks))

    uninterrupted = trainer(tmp_path / "a")
    uninterrupted.train()
    evaluations = [entry for entry in uninterrupted.state.log_history if f"eval_{SAMPLED}/NDCG@10" in entry]
    assert [entry["epoch"] for entry in evaluations] == [1, 2, 3, 4]
    best = max(evaluations, key=lambda entry: entry[f"eval_{SAMPLED}/NDCG@10"])
    assert uninterrupted.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    reference = ranking(uninterrupted.evaluate())
    assert reference[f"eval_{SAMPLED}/NDCG@10"] == best[f"eval_{SAMPLED}/NDCG@10"]  # the best model was loaded

    killed = trainer(tmp_path / "b", [CrashAfterSave(6)])  # 3 steps per epoch: step 6 ends epoch 2
    with pytest.raises(Crash):
        killed.train()
    resumed = trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-6"))
    assert ranking(resumed.evaluate()) == reference
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, uninterrupted.model.state_dict()[key], rtol=0, atol=1e-6, msg=key)
    assert_no_pickles(tmp_path)


def test_negatives_follow_the_epoch(small_data, tiny_backbone_dir, tmp_path):
    model = make_model(small_data, tiny_backbone_dir)
    trainer = LLMSRecTrainer(model, llm_args(tmp_path, max_steps=1, eval_every_epoch_fraction=None,
                                             eval_strategy="no", save_strategy="no", load_best_model_at_end=False),
                             train_dataset=small_data.splits["train"])
    collator = trainer.data_collator
    rows = [small_data.splits["train"][index] for index in range(4)]
    first = collator(rows)["candidate_item_ids"]
    assert torch.equal(first, collator(rows)["candidate_item_ids"])
    trainer.callback_handler.on_epoch_begin(trainer.args, TrainerState(epoch=1.0), trainer.control)
    assert collator.epoch == 1
    second = collator(rows)["candidate_item_ids"]
    assert torch.equal(first[:, 0], second[:, 0]) and not torch.equal(first, second)


def test_lr_decays_per_validation_and_early_stopping_stops(small_data, tiny_backbone_dir, tmp_path):
    trainer = LLMSRecTrainer(
        make_model(small_data, tiny_backbone_dir),
        llm_args(tmp_path, learning_rate=0.0, lr_decay_per_evaluation=0.5, early_stopping_patience=2,
                 num_train_epochs=5),
        train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
    )
    trainer.train()
    evaluations = [entry["step"] for entry in trainer.state.log_history if f"eval_{SAMPLED}/HR@10" in entry]
    # lr 0: the first validation is the best forever, so patience 2 stops at the third
    assert evaluations == [2, 4, 6] and trainer.state.global_step == 6
    schedule = trainer.lr_scheduler.lr_lambdas[0]
    assert [schedule(step) for step in (0, 1, 2, 3, 4, 6)] == [1, 1, 0.5, 0.5, 0.25, 0.125]


def test_all_positions_mode_trains_on_every_position(small_data, tiny_backbone_dir, tmp_path):
    train = small_data.splits["train"]
    trainer = LLMSRecTrainer(make_model(small_data, tiny_backbone_dir),
                             llm_args(tmp_path, train_mode="all", max_steps=2, eval_every_epoch_fraction=None,
                                      eval_steps=2, save_steps=2),
                             train_dataset=train, eval_dataset=small_data.splits["validation"])
    assert len(trainer.train_dataset) == sum(len(history) for history in train["history"])
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(8)])
    for row, user in enumerate(trainer.train_dataset[:8]["user_index"]):
        sequence = set(small_data.sequences("train")[user].tolist())
        assert not sequence & set(batch["candidate_item_ids"][row, 1:].tolist())
    trainer.train()
    assert trainer.state.global_step == 2


def test_activation_checkpointing_gives_the_same_training(small_data, tiny_backbone_dir, tmp_path):
    weights = []
    for checkpointing in (False, True):
        trainer = LLMSRecTrainer(
            # checkpointing drops the prefix cache; without it both runs take the same kernels (Adam amplifies
            # float-level gradient differences of near-zero entries)
            make_model(small_data, tiny_backbone_dir, item_prefix_cache_mb=0),
            llm_args(tmp_path / str(checkpointing), max_steps=2, eval_strategy="no", save_strategy="no",
                     eval_every_epoch_fraction=None, load_best_model_at_end=False,
                     activation_checkpointing=checkpointing),
            train_dataset=small_data.splits["train"],
        )
        trainer.train()
        assert trainer.model.llm.is_activation_checkpointing == checkpointing
        weights.append(trainer.model.checkpoint_state_dict())
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(weights[0]["user_out_embedding"], make_model(small_data, tiny_backbone_dir).user_out_embedding)


def test_bf16_autocast_trains_on_cpu(small_data, tiny_backbone_dir, tmp_path):
    trainer = LLMSRecTrainer(
        make_model(small_data, tiny_backbone_dir),
        llm_args(tmp_path, bf16=True, max_steps=2, eval_every_epoch_fraction=None, eval_steps=2, save_steps=2),
        train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert trainer.state.best_metric is not None


def test_trainers_refuse_the_wrong_model_or_arguments(small_data, tiny_backbone_dir, tmp_path):
    with pytest.raises(ValueError, match="LLMSRecForRecommendation"):
        LLMSRecTrainer(make_teacher(), llm_args(tmp_path))
    with pytest.raises(ValueError, match="SASRecTrainingArguments"):
        SASRecTrainer(make_teacher(), llm_args(tmp_path))
    with pytest.raises(ValueError, match="one datasets.Dataset"):
        LLMSRecTrainer(make_model(small_data, tiny_backbone_dir), llm_args(tmp_path),
                       train_dataset=small_data.splits["train"], eval_dataset={"validation": small_data.splits["validation"]})


def test_full_determinism_makes_two_threaded_training_repeat_bit_for_bit(small_data, tmp_path):
    """What the demo relies on to print the same table every run: with two CPU threads some gradient sums run in a
    run-dependent order unless torch's deterministic kernels are on (`full_determinism=True`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        weights = []
        for run in range(2):
            args = SASRecTrainingArguments(
                output_dir=str(tmp_path / str(run)), num_train_epochs=2, per_device_train_batch_size=8,
                eval_strategy="no", save_strategy="no", load_best_model_at_end=False, report_to="none",
                disable_tqdm=True, full_determinism=True, seed=0,
            )
            model = make_teacher()
            SASRecTrainer(model, args, train_dataset=small_data.splits["train"]).train()
            weights.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


@pytest.mark.parametrize("fraction, expected", [(0.6, [3, 6, 9]), (0.8, [4, 8, 10])])
def test_no_end_of_training_validation_right_after_a_scheduled_one(small_data, tiny_backbone_dir, tmp_path, fraction,
                                                                     expected):
    # 40 users, batch 8: 5 steps an epoch, 10 in all; a validation 1 step after step 9 is dropped, 2 after 8 is not
    trainer = LLMSRecTrainer(
        make_model(small_data, tiny_backbone_dir), llm_args(tmp_path, eval_every_epoch_fraction=fraction),
        train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
    )
    trainer.train()
    evaluations = [entry["step"] for entry in trainer.state.log_history if f"eval_{SAMPLED}/HR@10" in entry]
    assert evaluations == expected and trainer.state.global_step == 10
    assert (tmp_path / "checkpoint-10" / "trainer_state.json").is_file()  # the final state is still saved


def test_random_ranking_expectations_and_the_untrained_run_sentences():
    assert random_ranking_expectation("sampled(1+99, seed=0)/HR@10", 5000) == pytest.approx(0.1)
    assert random_ranking_expectation("sampled(1+99, seed=0)/NDCG@10", 5000) == pytest.approx(
        sum(1 / math.log2(rank + 1) for rank in range(1, 11)) / 100)
    assert random_ranking_expectation("full-catalog/HR@20", 1000) == pytest.approx(0.02)
    assert random_ranking_expectation("sampled(1+5, seed=0)/HR@10", 1000) == 1.0  # every candidate is in the top 10
    assert random_ranking_expectation("loss", 1000) is None
    assert untrained_run_warnings("sampled(1+99, seed=0)/HR@10", 0.35, 500, 2.1, 80) == []
    sentences = untrained_run_warnings("sampled(1+99, seed=0)/HR@10", 0.11, 500, 4.29, 80)
    assert "no better than a random ranking (0.1000)" in sentences[0]
    assert "retrieval loss ended at 4.290, near its chance level ln(80) = 4.382" in sentences[1]


@pytest.mark.parametrize("in_batch, chance", [(False, "ln(4)"), (True, "ln(32)")])  # 8 users x 4 candidates
def test_a_run_that_does_not_learn_says_so(small_data, tiny_backbone_dir, tmp_path, caplog, in_batch, chance):
    trainer = LLMSRecTrainer(
        make_model(small_data, tiny_backbone_dir, in_batch_negatives=in_batch),
        llm_args(tmp_path, learning_rate=0.0, num_eval_negatives=20),
        train_dataset=small_data.splits["train"], eval_dataset=small_data.splits["validation"],
    )
    with caplog.at_level(logging.WARNING, logger="llm_srec.training.trainer"):
        trainer.train()
    messages = [record.getMessage() for record in caplog.records if "did not learn" in record.getMessage()]
    assert any("no better than a random ranking" in message for message in messages)
    assert any(f"near its chance level {chance}" in message for message in messages)


def test_training_says_how_much_history_the_prompt_budget_cuts(small_data, tiny_backbone_dir):
    model = make_model(small_data, tiny_backbone_dir)
    train = small_data.splits["train"]
    assert history_cut_summary(model.processor, train) == (
        f"The {model.processor.max_prompt_length}-token prompt budget shows every history item (up to 5) for all "
        f"{len(train)} training users.")
    model.processor.max_prompt_length = 60  # room for about one item
    summary = history_cut_summary(model.processor, train, sample_size=10)
    match = re.fullmatch(r"The 60-token prompt budget cuts (\d+) of (\d+) history items \(.*\) for (\d+) of 10 "
                         r"training users \(a seeded sample\); raise max_prompt_length to show them\.", summary)
    assert match is not None, summary
    cut, wanted, users = map(int, match.groups())
    assert 0 < cut < wanted <= 50 and 0 < users <= 10
