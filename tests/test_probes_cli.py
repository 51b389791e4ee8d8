"""`llm-srec probe` end to end: a trained tiny LLM-SRec, its shuffled-training counterpart and an ablation trained by
the command itself, then report.md, PNG figures, probe.json and the model card, checked by their numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from conftest import TINY_HEAD_SIZES
from llm_srec import build_tiny_backbone
from llm_srec.cli import main
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.evaluation.probe_report import format_cell
from llm_srec.hub import PROBE_FILE, README_FILE
from llm_srec.training import LLMSRecTrainingArguments
from llm_srec.training.pipeline import train_llm_srec
from test_probes import train_sasrec

NEGATIVES = 10
SAMPLED = f"sampled(1+{NEGATIVES}, seed=0)"
FULL = "full-catalog"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANGE = re.compile(r"\((?:\+|−)\d+\.\d\d%\)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Prepared data, a SASRec teacher and a tiny LLM-SRec trained by the pipeline (with training_args.json)."""
    root = tmp_path_factory.mktemp("probe-cli")
    config = SyntheticConfig(num_users=80, num_items=30, min_length=4, max_length=8, noise=0.1, cycle_length=10)
    data = build_recommendation_data(generate_synthetic(config))
    data.save_to_disk(root / "data")
    sasrec = train_sasrec(data, epochs=20, hidden_size=16)
    sasrec.save_pretrained(root / "sasrec")
    backbone = build_tiny_backbone("llama", data.catalog.titles, root / "backbone", seed=0)
    args = LLMSRecTrainingArguments(
        output_dir=str(root / "llm-srec" / "checkpoints"), max_steps=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=16, eval_every_epoch_fraction=None, eval_steps=2, save_steps=2, max_eval_users=10,
        num_eval_negatives=NEGATIVES, eval_protocols=["sampled"], report_to=[], disable_tqdm=True, seed=0,
    )
    train_llm_srec(data, sasrec, backbone, root / "llm-srec", args=args, config_kwargs=TINY_HEAD_SIZES,
                   evaluate_test=False)
    return {"root": root, "data": root / "data", "sasrec": root / "sasrec", "model": root / "llm-srec"}


def assert_real_png(path: Path) -> None:
    """A PNG with content: the signature, more than a few KB, and pixels that are not all one colour."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, path
    assert len(raw) > 15_000, (path, len(raw))
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels[..., :3].std() > 0.05
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50


def test_probe_cli_trains_counterparts_and_writes_report_plots_and_card(trained):
    output = trained["root"] / "probe"
    code = main([
        "probe", "--model", str(trained["model"]), "--data", str(trained["data"]), "--output-dir", str(output),
        "--train-shuffled", "--ablation", "no_uniformity", "--max-users", "30", "--num-negatives", str(NEGATIVES),
        "--seed", "0", "--update-model-card",
    ])
    assert code == 0

    probe = json.loads((output / PROBE_FILE).read_text(encoding="utf-8"))
    assert probe["setup"]["users"] == 30
    assert probe["setup"]["protocols"] == [SAMPLED, FULL]
    assert list(probe["shuffled_training"]) == ["LLM-SRec", "LLM-SRec (w/o L_Uniform)"]
    assert list(probe["shuffled_inference"]) == [
        "LLM-SRec", "LLM-SRec (w/o L_Uniform)", "SASRec (teacher)", "Order-blind control",
    ]
    for label in ("LLM-SRec", "LLM-SRec (w/o L_Uniform)"):
        for protocol in (SAMPLED, FULL):
            training = probe["shuffled_training"][label][protocol]["NDCG@10"]
            inference = probe["shuffled_inference"][label][protocol]["NDCG@10"]
            assert set(training) == {"original", "shuffled", "change"}
            # both probes start from the same model on the same original test histories
            assert training["original"] == inference["original"]
            expected_change = (training["shuffled"] - training["original"]) / training["original"]
            assert training["change"] == pytest.approx(expected_change)
    teacher = probe["shuffled_inference"]["SASRec (teacher)"][SAMPLED]["NDCG@10"]
    assert teacher["change"] < -0.1  # the order-aware teacher loses accuracy under shuffling
    control = probe["shuffled_inference"]["Order-blind control"]
    assert all(cell["change"] == 0.0 for cells in control.values() for cell in cells.values())
    similarity = probe["representation_similarity"]
    assert set(similarity["LLM-SRec"]) == {"h_U", "f_user(h_U)"}
    assert similarity["SASRec (teacher)"]["O_u"]["cosine"] < 0.95
    assert similarity["Order-blind control"]["mean item embedding"]["cosine"] == pytest.approx(1.0)
    assert set(probe["transition_breakdown"]["LLM-SRec"]) == {"Transition set", "Non-transition set"}

    # the counterparts were trained by the pipeline, the way the probed model was trained
    shuffled_dir = output / "shuffled-model"
    assert "shuffled" in json.loads((shuffled_dir / "data_statistics.json").read_text())["dataset"]
    assert json.loads((shuffled_dir / "training_args.json").read_text())["max_steps"] == 2
    ablation_config = json.loads((output / "ablations" / "no_uniformity" / "shuffled" / "config.json").read_text())
    assert ablation_config["uniformity_loss_weight"] == 0.0
    assert ablation_config["embedding_size"] == TINY_HEAD_SIZES["embedding_size"]

    report = (output / "report.md").read_text(encoding="utf-8")
    for heading in ("## Shuffled training", "## Shuffled inference", "## Representation similarity",
                    "## Transition vs non-transition users", "## Warm vs cold target items"):
        assert heading in report
    assert f"Protocol: `{SAMPLED}`" in report and f"Protocol: `{FULL}`" in report
    row = next(line for line in report.splitlines() if line.startswith("| SASRec (teacher) | ") and "/" in line)
    assert row.split(" | ")[1] == format_cell(teacher)
    assert len(CHANGE.findall(report)) > 40
    figures = sorted(path.name for path in output.glob("*.png"))
    assert figures == ["representation_similarity.png", "shuffled_scores.png", "transition_breakdown.png",
                       "warm_cold_breakdown.png"]
    for name in figures:
        assert f"]({name})" in report
        assert_real_png(output / name)

    # --update-model-card: the probed model's folder now holds probe.json and a card with the probe tables
    assert json.loads((trained["model"] / PROBE_FILE).read_text(encoding="utf-8")) == probe
    card = (trained["model"] / README_FILE).read_text(encoding="utf-8")
    assert "## Sequence-understanding probes" in card
    assert f"LLM-SRec / {SAMPLED} / NDCG@10" in card


def test_probe_cli_on_a_sasrec_model(trained, capsys):
    output = trained["root"] / "probe-sasrec"
    code = main(["probe", "--model", str(trained["sasrec"]), "--data", str(trained["data"]), "--output-dir",
                 str(output), "--num-negatives", str(NEGATIVES), "--protocol", "sampled"])
    assert code == 0
    probe = json.loads((output / PROBE_FILE).read_text(encoding="utf-8"))
    assert list(probe["shuffled_inference"]) == ["SASRec", "Order-blind control"]
    assert list(probe["shuffled_inference"]["SASRec"]) == [SAMPLED]
    assert "shuffled_training" not in probe
    assert probe["shuffled_inference"]["SASRec"][SAMPLED]["NDCG@10"]["change"] < -0.1
    printed = capsys.readouterr().out.split()
    assert str(output / "report.md") in printed and str(output / "shuffled_scores.png") in printed

    code = main(["probe", "--model", str(trained["sasrec"]), "--data", str(trained["data"]), "--output-dir",
                 str(output), "--ablation", "no_uniformity"])
    assert code == 2
    assert "apply to an LLM-SRec model" in capsys.readouterr().err


@pytest.mark.parametrize("option, message", [
    (["--ablation", "no_retrieval"], "unknown ablation 'no_retrieval'"),
    (["--protocol", "leave-one-out"], "protocols must be a non-empty subset"),
    (["--max-users", "0"], "argument --max-users: '0' is not a positive integer"),
])
def test_probe_cli_rejects_bad_options_before_loading(tmp_path, capsys, option, message):
    argv = ["probe", "--model", str(tmp_path / "missing"), "--data", str(tmp_path / "missing"), "--output-dir",
            str(tmp_path / "out"), *option]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argument errors exit while parsing
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
