"""The example notebooks run top to bottom in their small configuration, and are stored without outputs.

Each notebook reads its parameters from environment variables in its first code cell, with full-size defaults for
real users; here `LLM_SREC_NB_SMALL=1` selects tiny models and short training, `LLM_SREC_NB_DATA` points the Amazon
notebook at benchmark files written locally in the real format, and `LLM_SREC_HUB_*` point the publishing notebook
at a fake Hub on localhost. Every notebook runs in its own temporary working directory, in a kernel started from the
interpreter running the tests (a kernel spec written here, so a non-activated virtual environment works too). A
cell error fails the test with the cell's traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import HANG_GUARD_S
from fake_hub import FakeHub
from huggingface_hub import ModelCard
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(path.name for path in EXAMPLES.glob("*.ipynb"))
KERNEL_NAME = "llm-srec-tests"
CELL_TIMEOUT_S = HANG_GUARD_S  # per cell: a hang guard, not a speed check
SAMPLED, FULL = "sampled(1+99, seed=0)", "full-catalog"
HUB_TOKEN = "hf_test_token"
HUB_REPO_ID = "test-user/llm-srec-notebook"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernel spec that runs `sys.executable -m ipykernel_launcher`, found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(str(root / "kernels" / KERNEL_NAME))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        yield KERNEL_NAME


def execute(name: str, workdir: Path, kernel: str, **env: str) -> nbformat.NotebookNode:
    """Run ``examples/name`` in ``workdir`` in the small configuration; returns the executed notebook."""
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    workdir.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "LLM_SREC_NB_SMALL": "1",
        "OMP_NUM_THREADS": "1",  # tiny models: intra-op threads only add spin-waiting on a shared CPU
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        **env,
    }
    client = NotebookClient(
        notebook, kernel_name=kernel, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(env=environment, cwd=str(workdir))
    return notebook


def outputs(notebook: nbformat.NotebookNode, mime: str = "text/plain") -> str:
    """Every stream output and every ``mime`` result of the code cells, concatenated."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data") and mime in output.data:
                parts.append(str(output.data[mime]))
    return "\n".join(parts)


def count_images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells for output in cell.get("outputs", [])
    )


def test_every_notebook_is_covered_below() -> None:
    assert NOTEBOOKS == [
        "01_quickstart.ipynb", "02_amazon_reviews_2023.ipynb", "03_sequence_probe.ipynb", "04_publish.ipynb",
    ]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    # the parameters cell comes first and switches to the small configuration from the environment
    assert 'os.environ.get("LLM_SREC_NB_SMALL")' in code_cells[0].source


def test_01_quickstart(tmp_path: Path, kernel_name: str) -> None:
    notebook = execute("01_quickstart.ipynb", tmp_path, kernel_name)

    text = outputs(notebook)
    for label in ("SASRec", "LLM-SRec (random-init tiny backbone)", "random ranker (expected)", SAMPLED, FULL):
        assert label in text
    assert "[UserOut]" in text and "trainable params" in text
    metrics = json.loads((tmp_path / "quickstart" / "llm-srec" / "metrics.json").read_text())
    assert set(metrics) == {SAMPLED, FULL}
    card = ModelCard.load(tmp_path / "quickstart" / "llm-srec" / "README.md")
    assert "random" in card.text.lower()  # the random-initialised backbone is labelled in the card


def test_02_amazon_reviews_2023(tmp_path: Path, kernel_name: str) -> None:
    """Offline and without LLM_SREC_NB_DATA, the notebook reads its synthetic Amazon-2023-format sample."""
    notebook = execute("02_amazon_reviews_2023.ipynb", tmp_path / "run", kernel_name)

    text = outputs(notebook)
    assert "amazon2023-Industrial_and_Scientific" in text
    assert "HF_HUB_OFFLINE=1: reading a synthetic sample in the Amazon Reviews 2023 format" in text
    assert "paper (Table 10)" in text and "0.3388" in text  # the paper's numbers are shown next to the run's
    for label in ("SASRec", "LLM-SRec (random-init tiny backbone)", SAMPLED, FULL):
        assert label in text
    output = tmp_path / "run" / "amazon2023-Industrial_and_Scientific"
    assert (output / "data" / "statistics.json").is_file()
    assert set(json.loads((output / "llm-srec" / "metrics.json").read_text())) == {SAMPLED, FULL}


def test_03_sequence_probe(tmp_path: Path, kernel_name: str) -> None:
    notebook = execute("03_sequence_probe.ipynb", tmp_path, kernel_name)

    text = outputs(notebook)
    for label in ("SASRec", "LLM-SRec", "Order-blind control", SAMPLED, FULL):
        assert label in text
    assert count_images(notebook) >= 4  # scores, similarity and the two breakdowns
    assert "Sequence-understanding probes" in outputs(notebook, "text/markdown")
    probe = json.loads((tmp_path / "sequence-probe" / "llm-srec" / "probe.json").read_text())
    assert set(probe["shuffled_training"]) == {"SASRec", "LLM-SRec (w/o L_Distill, L_Uniform)", "LLM-SRec"}
    # the order-blind control calibrates the probe: no change, similarity 1
    control = probe["shuffled_inference"]["Order-blind control"]
    assert all(cell["change"] == 0 for by_metric in control.values() for cell in by_metric.values())
    assert probe["representation_similarity"]["Order-blind control"]["mean item embedding"]["cosine"] == pytest.approx(1)


def test_04_publish(tmp_path: Path, kernel_name: str) -> None:
    with FakeHub() as hub:
        notebook = execute(
            "04_publish.ipynb", tmp_path, kernel_name,
            LLM_SREC_HUB_ENDPOINT=hub.endpoint, LLM_SREC_HUB_REPO_ID=HUB_REPO_ID, LLM_SREC_HUB_TOKEN=HUB_TOKEN,
            # the kernel may talk to the fake Hub, and nothing else: the default endpoint points there too
            HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"),
        )
        assert hub.unhandled == []
        repos = hub.repos

    assert "REPO_ID is not set" not in outputs(notebook)
    model_files = repos[HUB_REPO_ID].revisions["main"]
    assert {"README.md", "config.json", "model.safetensors", "metrics.json", "item_catalog.json"} <= set(model_files)
    assert not any(path.startswith("checkpoint") or "optimizer" in path for path in model_files)  # no trainer state
    card = ModelCard(model_files["README.md"].decode())
    assert f'from_pretrained("{HUB_REPO_ID}")' in card.text
    configs = {entry["config"] for result in card.data.to_dict()["model-index"][0]["results"]
               for entry in result["metrics"]}
    assert configs == {SAMPLED, FULL}
    teacher = repos[f"{HUB_REPO_ID}-sasrec"].revisions["main"]
    assert {"README.md", "config.json", "model.safetensors"} <= set(teacher)
    # model.push_to_hub(create_pr=True) opened a pull request carrying our card, not transformers' generic one
    assert "- sequential-recommendation" in repos[HUB_REPO_ID].revisions["refs/pr/1"]["README.md"].decode()
