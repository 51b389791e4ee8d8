"""Length-aware batching: evaluation batches users by prompt length without changing any user's scores, a sampled-
only evaluation encodes only the candidates' items, and `train_sampling_strategy="group_by_length"` trains on
batches of similar prompt length and resumes bit-equal."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import PartialState
from datasets import Dataset
from transformers import TrainerCallback

from conftest import HANG_GUARD_S, TINY_HEAD_SIZES
from llm_srec import SASRecConfig, SASRecModel, build_tiny_backbone
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.data.collators import LLMSRecCollator, user_prompt_lengths
from llm_srec.evaluation import FULL_CATALOG, RankingEvaluator, SASRecEncoder, sampled_protocol
from llm_srec.evaluation.ranking import LLMSRecEncoder
from llm_srec.training import LLMSRecTrainer, LLMSRecTrainingArguments
from llm_srec.training.pipeline import build_llm_srec
from llm_srec.training.trainer import EpochSeededLengthGroupedSampler

NEGATIVES = 3
CPU_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "accelerate" / "cpu_2proc.yaml"


def make_split(histories: list[list[int]], targets: list[int]) -> Dataset:
    return Dataset.from_dict({
        "user_id": [f"u{user}" for user in range(len(histories))],
        "user_index": list(range(len(histories))),
        "history": histories,
        "history_timestamps": [[] for _ in histories],
        "target": targets,
        "target_timestamp": [-1 for _ in histories],
    })


def mixed_split() -> Dataset:
    """Short and long histories alternating, so split-order batches mix them."""
    histories = [[(start + step) % 16 + 1 for step in range(1 if user % 2 else 8 + user % 3)]
                 for user, start in enumerate(range(0, 48, 4))]
    return make_split(histories, [history[-1] % 16 + 1 for history in histories])


class RecordingEncoder(LLMSRecEncoder):
    """`LLMSRecEncoder` with ``prompt_lengths``, recording every user vector, item vector and batch's padding."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.users: dict[tuple[int, ...], torch.Tensor] = {}
        self.items: dict[int, torch.Tensor] = {}
        self.tokens = {"padded": 0, "real": 0}

    def prompt_lengths(self, histories: list[list[int]], timestamps: list[list[int]]) -> list[int]:
        return user_prompt_lengths(self.processor, histories, timestamps)

    def encode_users(self, histories: list[list[int]], timestamps: list[list[int]]) -> torch.Tensor:
        mask = self.processor(histories, timestamps=[list(times) or None for times in timestamps])["attention_mask"]
        self.tokens["padded"] += mask.numel()
        self.tokens["real"] += int(mask.sum())
        vectors = super().encode_users(histories, timestamps)
        self.users.update({tuple(history): vector for history, vector in zip(histories, vectors)})
        return vectors

    def encode_items(self, item_ids: list[int]) -> torch.Tensor:
        vectors = super().encode_items(item_ids)
        self.items.update(dict(zip(item_ids, vectors)))
        return vectors


def evaluate(model, split: Dataset, length_grouping: bool, protocols=("sampled", "full"), batch_size: int = 4):
    encoder = RecordingEncoder(model)
    evaluator = RankingEvaluator(split, 16, protocols, num_negatives=NEGATIVES, batch_size=batch_size, ks=(1, 3, 16),
                                 length_grouping=length_grouping)
    return evaluator, encoder, evaluator.evaluate(encoder, show_progress=False)


def test_prompt_lengths_are_the_collated_prompt_lengths(tiny_processor):
    split = mixed_split()
    lengths = user_prompt_lengths(tiny_processor, split["history"], split["history_timestamps"], batch_size=5)
    mask = tiny_processor(split["history"])["attention_mask"]
    assert lengths == mask.sum(1).tolist()
    assert len(set(lengths)) > 1
    collator = LLMSRecCollator(tiny_processor, num_negatives=1)
    assert collator.prompt_lengths(split) == lengths
    rows = [split[index] for index in range(3)]
    assert collator(rows)["attention_mask"].sum(1).tolist() == lengths[:3]


def test_length_grouped_evaluation_scores_every_user_as_split_order_does_with_less_padding(tiny_model):
    split = mixed_split()
    grouped_evaluator, grouped, grouped_results = evaluate(tiny_model, split, length_grouping=True)
    _, plain, plain_results = evaluate(tiny_model, split, length_grouping=False)
    assert grouped_results == plain_results
    assert grouped.users.keys() == plain.users.keys() == {tuple(history) for history in split["history"]}
    for history, vector in grouped.users.items():
        torch.testing.assert_close(vector, plain.users[history], msg=str(history))
    assert grouped.tokens["real"] == plain.tokens["real"]
    assert grouped.tokens["padded"] < plain.tokens["padded"]
    # longest first, ties in split order, batches of batch_size
    lengths = np.asarray(grouped.prompt_lengths(grouped_evaluator.histories, grouped_evaluator.timestamps))
    order = np.concatenate(grouped_evaluator.user_batches(grouped))
    assert sorted(order.tolist()) == list(range(len(split)))
    assert all(lengths[a] > lengths[b] or (lengths[a] == lengths[b] and a < b) for a, b in zip(order, order[1:]))
    assert [len(batch) for batch in grouped_evaluator.user_batches(grouped)] == [4, 4, 4]


def test_users_stay_in_split_order_without_prompt_lengths_or_with_grouping_off(tiny_sasrec, tiny_model):
    split = mixed_split()
    expected = [list(range(start, min(start + 5, len(split)))) for start in range(0, len(split), 5)]
    sasrec_batches = RankingEvaluator(split, 16, batch_size=5).user_batches(SASRecEncoder(tiny_sasrec))
    assert [batch.tolist() for batch in sasrec_batches] == expected
    off = RankingEvaluator(split, 16, batch_size=5, length_grouping=False).user_batches(RecordingEncoder(tiny_model))
    assert [batch.tolist() for batch in off] == expected


def test_sampled_only_evaluation_encodes_the_candidates_union_and_ranks_as_with_the_full_index(tiny_model):
    split = make_split([[1, 2, 3], [4, 5]], [6, 7])
    sampled_evaluator, sampled, sampled_results = evaluate(tiny_model, split, True, protocols=["sampled"])
    full_evaluator, full, full_results = evaluate(tiny_model, split, True)
    needed = np.unique(sampled_evaluator.candidates)
    assert len(needed) < 16
    assert sampled_evaluator.index_items.tolist() == needed.tolist() == sorted(sampled.items)
    assert full_evaluator.index_items.tolist() == sorted(full.items) == list(range(1, 17))
    for item, vector in sampled.items.items():
        torch.testing.assert_close(vector, full.items[item], msg=str(item))
    with torch.no_grad():
        subset_index = sampled_evaluator._item_index(sampled, PartialState(), False, "items")
        full_index = full_evaluator._item_index(full, PartialState(), False, "items")
    torch.testing.assert_close(subset_index[needed], full_index[needed])
    others = np.setdiff1d(np.arange(17), needed)
    assert not subset_index[others].any() and full_index[1:].abs().sum(1).gt(0).all()
    label = sampled_protocol(NEGATIVES, 0)
    assert sampled_results[label] == full_results[label]
    assert FULL_CATALOG in full_results and FULL_CATALOG not in sampled_results


def test_the_length_grouped_sampler_is_seeded_by_the_epoch_not_the_global_rng():
    lengths = [int(length) for length in torch.randint(1, 50, (200,), generator=torch.Generator().manual_seed(0))]
    sampler = EpochSeededLengthGroupedSampler(8, lengths, seed=3)
    first = list(sampler)
    torch.manual_seed(123)
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(200))
    assert list(EpochSeededLengthGroupedSampler(8, lengths, seed=4)) != first


# Every process builds the same seeded model and ranks with length grouping, sampled-only and with both protocols.
DISTRIBUTED_EVALUATION = """
import json, sys
from llm_srec.cli._training import use_cpu_processes_without_accelerator
use_cpu_processes_without_accelerator()
from accelerate import PartialState
import torch
from conftest import TINY_HEAD_SIZES
from llm_srec import SASRecConfig, SASRecModel
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.data.collators import user_prompt_lengths
from llm_srec.evaluation import RankingEvaluator
from llm_srec.evaluation.ranking import LLMSRecEncoder
from llm_srec.training.pipeline import build_llm_srec

class LengthEncoder(LLMSRecEncoder):
    def prompt_lengths(self, histories, timestamps):
        return user_prompt_lengths(self.processor, histories, timestamps)

state = PartialState()
data = build_recommendation_data(generate_synthetic(SyntheticConfig(
    num_users=45, num_items=60, min_length=4, max_length=12, cycle_length=10, noise=0.1)))
torch.manual_seed(0)
teacher = SASRecModel(SASRecConfig(num_items=60, hidden_size=16, num_hidden_layers=1, max_position_embeddings=12))
model = build_llm_srec(data, teacher, sys.argv[1], config_kwargs={**TINY_HEAD_SIZES, "history_length": 8}, seed=0)
encoder = LengthEncoder(model)
results = {}
for protocols in (["sampled"], ["sampled", "full"]):
    evaluator = RankingEvaluator(data.splits["validation"], 60, protocols, num_negatives=3, batch_size=4)
    results["+".join(protocols)] = evaluator.evaluate(encoder, show_progress=False)
    results["+".join(protocols) + " items"] = len(evaluator.index_items)
if state.is_main_process:
    print("RESULTS " + json.dumps(results), flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_evaluation(script: Path, backbone: Path, processes: int) -> dict:
    if processes == 1:
        command = [sys.executable, str(script), str(backbone)]
    else:
        accelerate = shutil.which("accelerate")
        assert accelerate, "accelerate's launcher is not installed"
        command = [accelerate, "launch", "--config_file", str(CPU_CONFIG), "--main_process_port", str(free_port()),
                   str(script), str(backbone)]
    path = os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


@pytest.mark.slow
def test_length_grouped_subset_index_evaluation_is_the_same_in_two_processes(tmp_path):
    # 45 users in batches of 4: uneven user and item-batch shares across the two processes
    script = tmp_path / "evaluate.py"
    script.write_text(DISTRIBUTED_EVALUATION, encoding="utf-8")
    data = build_recommendation_data(generate_synthetic(SyntheticConfig(
        num_users=45, num_items=60, min_length=4, max_length=12, cycle_length=10, noise=0.1)))
    backbone = build_tiny_backbone("llama", data.catalog.titles, tmp_path / "backbone", seed=0)
    single = run_evaluation(script, backbone, 1)
    assert single["sampled items"] < single["sampled+full items"] == 60
    assert run_evaluation(script, backbone, 2) == single


# ------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def varied_data():
    config = SyntheticConfig(num_users=64, num_items=30, min_length=4, max_length=12, cycle_length=10, noise=0.1)
    return build_recommendation_data(generate_synthetic(config))


class RecordingCollator(LLMSRecCollator):
    """Records the real prompt lengths of every collated batch."""

    batches: list[list[int]]

    def __call__(self, features):
        batch = super().__call__(features)
        self.batches.append(batch["attention_mask"].sum(1).tolist())
        return batch


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash


def length_grouped_trainer(data, backbone: Path, output_dir: Path, callbacks=()) -> LLMSRecTrainer:
    torch.manual_seed(0)
    teacher = SASRecModel(SASRecConfig(num_items=data.num_items, hidden_size=16, num_hidden_layers=1,
                                       max_position_embeddings=12))
    model = build_llm_srec(data, teacher, backbone, config_kwargs={**TINY_HEAD_SIZES, "history_length": 8}, seed=0)
    collator = RecordingCollator(model.processor, sasrec_maxlen=12, num_negatives=NEGATIVES, seed=0)
    collator.batches = []
    args = LLMSRecTrainingArguments(
        output_dir=str(output_dir), num_train_epochs=2, per_device_train_batch_size=4, per_device_eval_batch_size=16,
        learning_rate=1e-3, num_eval_negatives=10, max_eval_users=None, eval_every_epoch_fraction=0.5,
        early_stopping_patience=None, save_total_limit=None, use_cpu=True, disable_tqdm=True, report_to="none",
        seed=0, logging_steps=1, lr_scheduler_type="linear", warmup_steps=2, train_sampling_strategy="group_by_length",
    )
    return LLMSRecTrainer(model, args, train_dataset=data.splits["train"], eval_dataset=data.splits["validation"],
                          data_collator=collator, callbacks=list(callbacks))


def padded_tokens(batches: list[list[int]]) -> int:
    return sum(len(batch) * max(batch) for batch in batches)


def test_group_by_length_training_batches_similar_prompts_and_resumes_bit_equal(
    varied_data, tiny_backbone_dir, tmp_path
):
    uninterrupted = length_grouped_trainer(varied_data, tiny_backbone_dir("llama"), tmp_path / "a")
    uninterrupted.train()
    batches = uninterrupted.data_collator.batches
    assert len(batches) == 32 and all(len(batch) == 4 for batch in batches)
    lengths = uninterrupted.data_collator.prompt_lengths(varied_data.splits["train"])
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [[lengths[row] for row in shuffled[start : start + 4]] for start in range(0, len(lengths), 4)]
    assert padded_tokens(batches[:16]) < padded_tokens(random_batches)
    reference = uninterrupted.evaluate()

    killed = length_grouped_trainer(varied_data, tiny_backbone_dir("llama"), tmp_path / "b", [CrashAfterSave(24)])
    with pytest.raises(Crash):
        killed.train()
    resumed = length_grouped_trainer(varied_data, tiny_backbone_dir("llama"), tmp_path / "b")
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 32
    assert resumed.data_collator.batches == batches[24:]
    ranking = {key: value for key, value in resumed.evaluate().items() if "/" in key}
    assert ranking == {key: value for key, value in reference.items() if "/" in key}
    expected = uninterrupted.model.checkpoint_state_dict()
    for key, value in resumed.model.checkpoint_state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=key)


def test_length_strategies_read_the_length_column_or_the_collators_prompt_lengths(
    varied_data, tiny_backbone_dir, tmp_path
):
    trainer = length_grouped_trainer(varied_data, tiny_backbone_dir("llama"), tmp_path)
    measured = trainer.data_collator.prompt_lengths(varied_data.splits["train"])
    assert trainer._get_train_sampler().lengths == measured
    trainer.args.train_sampling_strategy = "batch_rebalance"
    assert trainer._get_train_sampler().lengths == measured
    trainer.args.train_sampling_strategy = "group_by_length"
    trainer.data_collator = lambda features: features
    with pytest.raises(ValueError, match="needs each training row's length"):
        trainer.get_train_dataloader()
    given = varied_data.splits["train"].add_column("length", list(range(64)))
    assert trainer._get_train_sampler(given).lengths == list(range(64))
