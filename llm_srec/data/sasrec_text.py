"""SASRec text format: one `user item` line per interaction, each user's lines in time order, no timestamps.

Why: this is the format the SASRec and SASRec.pytorch repositories ship (e.g. `ml-1m.txt`, `Video.txt`), so
published SASRec numbers can be reproduced on exactly their data. Titles come from an optional separate file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .movielens import ML_ENCODING, read_movielens_titles
from .raw import NO_TIMESTAMP, RawInteractions
from .report import DropReport
from .textio import BadRows, EncodingErrors, UnknownItems, handle_unknown_items, read_delimited

_SUFFIXES = (".txt", ".txt.gz")


def read_title_file(
    path: Path, report: DropReport, encoding: str | None = None, encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
) -> pd.Series:
    """Titles by item id from `movies.dat`/`u.item` (MovieLens, Latin-1) or a headerless `item<TAB>title` file."""
    path = Path(path)
    if path.name.startswith(("movies.dat", "u.item")):
        return read_movielens_titles(path, report, encoding or ML_ENCODING, encoding_errors, on_bad_rows)
    frame = read_delimited(
        path, sep="\t", names=["item", "title"], required=["item", "title"], encoding=encoding or "utf-8",
        encoding_errors=encoding_errors, on_bad_rows=on_bad_rows, report=report, stage="read_titles",
        quoting=False,
    )
    return pd.Series(frame["title"].to_numpy(object), index=frame["item"].str.strip().to_numpy(object))


def _find_sequence_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.name.endswith(_SUFFIXES))
        if len(candidates) == 1:
            return candidates[0]
        raise FileNotFoundError(
            f"{path}: expected exactly one *.txt or *.txt.gz sequence file, found {[p.name for p in candidates]}"
        )
    raise FileNotFoundError(f"{path}: no such file or folder")


def load_sasrec_text(
    path: str | Path,
    *,
    titles_path: str | Path | None = None,
    encoding: str = "utf-8",
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    unknown_items: UnknownItems = "keep",
) -> RawInteractions:
    """Read `user item` lines (whitespace-separated, optionally gzipped); file order is the time order.

    `path` is the file or a folder holding exactly one `*.txt[.gz]`. `titles_path`: optional title file (see
    `read_title_file`); without it every item gets the placeholder title (counted).
    """
    sequence_file = _find_sequence_file(Path(path))
    report = DropReport()
    stage = "read_interactions"
    frame = read_delimited(
        sequence_file, sep=" ", names=["user", "item"], required=["user", "item"], encoding=encoding,
        encoding_errors=encoding_errors, on_bad_rows=on_bad_rows, report=report, stage=stage, quoting=False,
    )
    frame["user"], frame["item"] = frame["user"].str.strip(), frame["item"].str.strip()
    titles = None
    if titles_path is not None:
        titles = read_title_file(Path(titles_path), report, None, encoding_errors, on_bad_rows)
        frame = handle_unknown_items(frame, "item", titles.index, unknown_items, sequence_file, report, stage)
    interactions = pd.DataFrame(
        {"user": frame["user"], "item": frame["item"], "timestamp": np.full(len(frame), NO_TIMESTAMP, np.int64)}
    )
    name = sequence_file.name.removesuffix(".gz").removesuffix(".txt")
    return RawInteractions(interactions, titles, name=name, report=report)
