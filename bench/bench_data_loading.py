"""Time loading + splitting ML-1M (SASRec text format, item 5-core) and print one JSON line.

Usage: python bench/bench_data_loading.py [--data-dir ../shared/data/ml-1m] [--repeats 5]
The timing covers reading `ml-1m_seq.txt.gz` + `movies.dat`, ordering, filtering, re-indexing, the leave-last-out
split and title resolution (everything `llm-srec prepare-data` does before saving). It is recorded, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from llm_srec.data import build_recommendation_data, load_sasrec_text

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times, load_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        raw = load_sasrec_text(args.data_dir / "ml-1m_seq.txt.gz", titles_path=args.data_dir / "movies.dat")
        loaded = time.perf_counter()
        data = build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=5, min_item_interactions=5)
        times.append(time.perf_counter() - start)
        load_times.append(loaded - start)
    stats = data.statistics()
    print(json.dumps({
        "benchmark": "ml-1m load + split",
        "median_seconds": round(statistics.median(times), 4),
        "median_read_seconds": round(statistics.median(load_times), 4),
        "repeats": args.repeats,
        "users": stats["num_users"],
        "items": stats["num_items"],
        "interactions": stats["num_interactions"],
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
