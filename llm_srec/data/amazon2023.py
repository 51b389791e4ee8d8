"""Amazon Reviews 2023 (McAuley Lab), the paper's data: benchmark 5-core "last_out" split CSVs plus item metadata.

Why no `load_dataset`: the Hub dataset is script-based and `datasets>=4` refuses loading scripts, so the benchmark
CSVs (`user_id,parent_asin,rating,timestamp`, timestamp in ms) and `meta_<Category>.jsonl` are fetched with
`huggingface_hub.hf_hub_download` (cached by the hub library) or read from a local folder holding the same files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from huggingface_hub import hf_hub_download

from .raw import SPLIT_ORDER, RawInteractions
from .report import DropReport
from .textio import (
    BadRows,
    EncodingErrors,
    UnknownItems,
    handle_unknown_items,
    parse_int,
    read_delimited,
    read_jsonl,
    reject_rows,
)

REPO_ID = "McAuley-Lab/Amazon-Reviews-2023"
BENCHMARK_DIR = "benchmark/5core/last_out"
META_DIR = "raw/meta_categories"
# the paper's four categories and the official code's user-sampling rates (PAPER.md §5.2)
PAPER_SAMPLING_RATES: dict[str, float] = {
    "Movies_and_TV": 0.05,
    "Industrial_and_Scientific": 1.0,
    "Electronics": 0.05,
    "CDs_and_Vinyl": 0.33,
}
MS_PER_SECOND = 1000


def repo_files(category: str) -> dict[str, str]:
    """Repository paths of a category's benchmark split files and metadata file."""
    files = {split: f"{BENCHMARK_DIR}/{category}.{split}.csv" for split in SPLIT_ORDER}
    files["meta"] = f"{META_DIR}/meta_{category}.jsonl"
    return files


def paper_settings(category: str, seed: int = 0) -> dict[str, object]:
    """`build_recommendation_data` keyword arguments reproducing the official preprocessing of a paper category:
    user sampling at the paper's rate, no deduplication, the single-pass >= 5 filter."""
    if category not in PAPER_SAMPLING_RATES:
        raise ValueError(f"{category!r} is not one of the paper's categories {sorted(PAPER_SAMPLING_RATES)}")
    return {"sample_rate": PAPER_SAMPLING_RATES[category], "seed": seed, "dedup": "none", "filter_mode": "paper",
            "min_user_interactions": 5, "min_item_interactions": 5}


def _local_file(folder: Path, repo_path: str) -> Path:
    """The file under `folder` at its repository path or flat, optionally gzipped (the UCSD mirror's `.gz`)."""
    name = repo_path.rsplit("/", 1)[-1]
    candidates = [folder / repo_path, folder / name, folder / f"{repo_path}.gz", folder / f"{name}.gz"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{folder}: {name} not found (looked for {[str(c) for c in candidates]})")
    return found


def fetch_file(repo_path: str, path: str | Path | None, revision: str | None, cache_dir: str | Path | None) -> Path:
    """Local file from `path` (a folder) or, when `path` is None, downloaded from the Hub dataset repository."""
    if path is not None:
        return _local_file(Path(path), repo_path)
    downloaded = hf_hub_download(
        repo_id=REPO_ID, repo_type="dataset", filename=repo_path, revision=revision,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    return Path(downloaded)


def read_metadata_titles(
    path: Path, report: DropReport, encoding_errors: EncodingErrors = "strict", on_bad_rows: BadRows = "error"
) -> pd.Series:
    """`parent_asin -> title` from a metadata JSONL file (other fields are not read)."""
    stage = "read_titles"
    frame = read_jsonl(path, columns=["parent_asin", "title"], encoding_errors=encoding_errors,
                       on_bad_rows=on_bad_rows, report=report, stage=stage)
    frame = reject_rows(frame, frame["parent_asin"].isna().to_numpy(), path, "parent_asin", "missing",
                        on_bad_rows, report, stage)
    return pd.Series(frame["title"].to_numpy(object), index=frame["parent_asin"].to_numpy(object), dtype=object)


def load_amazon2023(
    category: str,
    *,
    path: str | Path | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    metadata: bool = True,
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    unknown_items: UnknownItems = "keep",
) -> RawInteractions:
    """Read a category's train/valid/test benchmark rows (tagged in a `split` column) and its titles.

    `path`: a local folder with the files (repository layout or flat, optionally `.gz`); None downloads them from
    the Hub. Timestamps are converted from milliseconds to unix seconds. User sampling and the paper's single-pass
    filter are pipeline steps: see `PAPER_SAMPLING_RATES` and `build_recommendation_data(filter_mode="paper")`.
    """
    files = repo_files(category)
    report = DropReport()
    stage = "read_interactions"
    parts = []
    titles = None
    if metadata:
        meta_path = fetch_file(files["meta"], path, revision, cache_dir)
        titles = read_metadata_titles(meta_path, report, encoding_errors, on_bad_rows)
    for split in SPLIT_ORDER:
        csv = fetch_file(files[split], path, revision, cache_dir)
        frame = read_delimited(
            csv, sep=",", required=["user_id", "parent_asin", "timestamp"], encoding_errors=encoding_errors,
            on_bad_rows=on_bad_rows, report=report, stage=stage,
        )
        if titles is not None:
            frame = handle_unknown_items(frame, "parent_asin", titles.index, unknown_items, csv, report, stage)
        frame, milliseconds = parse_int(frame, "timestamp", csv, on_bad_rows, report, stage)
        parts.append(pd.DataFrame({
            "user": frame["user_id"].to_numpy(object),
            "item": frame["parent_asin"].to_numpy(object),
            "timestamp": milliseconds // MS_PER_SECOND,
            "split": split,
        }))
    interactions = pd.concat(parts, ignore_index=True)
    return RawInteractions(interactions, titles, name=f"amazon2023-{category}", report=report)
