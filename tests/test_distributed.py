"""`accelerate launch --num_processes 2 --cpu` (gloo): training and evaluation run in two processes, and the
metrics equal a single-process evaluation of the same model (no user counted twice or missed)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S
import torch

from llm_srec import SASRecConfig, SASRecModel, build_tiny_backbone
from llm_srec.cli import main
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic

NEGATIVES = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CPU_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "accelerate" / "cpu_2proc.yaml"


# Both commands in one launch, so the two processes pay the imports once.
TWO_COMMANDS = """
import json, sys
from llm_srec.cli import main
commands = json.loads(sys.argv[1])
for argv in commands:
    code = main(argv)
    if code:
        sys.exit(code)
"""


def launch(tmp_path: Path, *commands: list[str]) -> subprocess.CompletedProcess:
    """`accelerate launch` with the example 2-CPU-process config, running `llm-srec` commands in turn."""
    accelerate = shutil.which("accelerate")
    assert accelerate, "accelerate's launcher is not installed"
    script = tmp_path / "commands.py"
    script.write_text(TWO_COMMANDS, encoding="utf-8")
    command = [accelerate, "launch", "--config_file", str(CPU_CONFIG), "--main_process_port", str(free_port()),
               str(script), json.dumps(list(commands))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_two_process_training_and_evaluation_equal_single_process_evaluation(tmp_path):
    config = SyntheticConfig(num_users=45, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    data = build_recommendation_data(generate_synthetic(config))
    data.save_to_disk(tmp_path / "data")
    torch.manual_seed(0)
    SASRecModel(SASRecConfig(num_items=30, hidden_size=16, num_hidden_layers=1, max_position_embeddings=12)
                ).save_pretrained(tmp_path / "sasrec")
    build_tiny_backbone("llama", data.catalog.titles, tmp_path / "backbone", seed=0)

    # 45 users: uneven shares of the user and item batches across the two processes
    launched = launch(
        tmp_path,
        ["train", "--data", str(tmp_path / "data"), "--sasrec", str(tmp_path / "sasrec"), "--backbone",
         str(tmp_path / "backbone"), "--output-dir", str(tmp_path / "model"), "--max-steps", "3", "--batch-size", "4",
         "--learning-rate", "1e-3", "--eval-fraction", "0.5", "--eval-negatives", str(NEGATIVES), "--eval-batch-size",
         "7", "--history-length", "5", "--embedding-size", "16", "--head-hidden-size", "32", "--cf-hidden-size", "16",
         "--no-progress"],
        ["evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--split", "validation",
         "--negatives", str(NEGATIVES), "--batch-size", "4", "--output", str(tmp_path / "two.json"), "--no-progress"],
    )
    assert launched.stdout.count("LLM-SRec model saved") == 1  # only the main process reports and writes
    assert "sampled(1+10, seed=0) NDCG@10" in launched.stdout and "(45 users, " in launched.stdout
    state = json.loads((tmp_path / "model" / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4 and state["global_step"] == 3
    assert {path.name for path in (tmp_path / "model" / "checkpoints" / "checkpoint-3").glob("rng_state_*.json")} == {
        "rng_state_0.json", "rng_state_1.json"}
    distributed_test = json.loads((tmp_path / "model" / "metrics.json").read_text(encoding="utf-8"))
    distributed_validation = json.loads((tmp_path / "two.json").read_text(encoding="utf-8"))

    for split, expected in (("test", distributed_test), ("validation", distributed_validation)):
        output = tmp_path / f"one-{split}.json"
        assert main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--split",
                     split, "--negatives", str(NEGATIVES), "--batch-size", "4", "--output", str(output),
                     "--no-progress"]) == 0
        single = json.loads(output.read_text(encoding="utf-8"))
        assert single == expected
        for metrics in single.values():
            assert metrics["num_users"] == 45
