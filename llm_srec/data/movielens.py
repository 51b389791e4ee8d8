"""MovieLens readers: ML-1M (`ratings.dat`/`movies.dat`, "::"-separated) and ML-100K (`u.data`/`u.item`).

Why a dedicated reader: the GroupLens files are Latin-1, headerless and use "::" or "|" separators; every rating is
an interaction (the paper-style implicit-feedback convention), with real unix-second timestamps.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .raw import RawInteractions
from .report import DropReport
from .textio import BadRows, EncodingErrors, UnknownItems, handle_unknown_items, parse_int, read_delimited

ML_ENCODING = "latin-1"
_ML100K_ITEM_FIELDS = ["item", "title", "release", "video_release", "url", *(f"genre_{i}" for i in range(19))]


def read_movielens_titles(
    path: Path, report: DropReport, encoding: str = ML_ENCODING, encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
) -> pd.Series:
    """Titles from `movies.dat` (`id::title::genres`) or `u.item` (`id|title|...`), indexed by movie id (str)."""
    path = Path(path)
    if path.name.startswith("u.item"):
        names, sep = _ML100K_ITEM_FIELDS, "|"
    else:
        names, sep = ["item", "title", "genres"], "::"
    frame = read_delimited(
        path, sep=sep, names=names, required=["item", "title"], encoding=encoding,
        encoding_errors=encoding_errors, on_bad_rows=on_bad_rows, report=report, stage="read_titles",
        quoting=False,
    )
    return pd.Series(frame["title"].to_numpy(object), index=frame["item"].str.strip().to_numpy(object))


def _first_existing(directory: Path, names: list[str]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def load_movielens(
    path: str | Path,
    *,
    titles_path: str | Path | None = None,
    encoding: str = ML_ENCODING,
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    unknown_items: UnknownItems = "keep",
) -> RawInteractions:
    """Read a MovieLens folder holding `ratings.dat[.gz]` (ML-1M) or `u.data` (ML-100K).

    `titles_path` overrides where `movies.dat`/`u.item` is looked up (default: the same folder).
    `unknown_items`: what to do with ratings of movies missing from the title file (see `handle_unknown_items`).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a folder (expected a MovieLens folder with ratings.dat or u.data)")
    report = DropReport()
    stage = "read_interactions"
    ratings = _first_existing(directory, ["ratings.dat", "ratings.dat.gz"])
    if ratings is not None:
        sep, default_titles = "::", "movies.dat"
    else:
        ratings = _first_existing(directory, ["u.data", "u.data.gz"])
        sep, default_titles = "\t", "u.item"
    if ratings is None:
        raise FileNotFoundError(f"{directory}: neither ratings.dat (ML-1M) nor u.data (ML-100K) found")
    frame = read_delimited(
        ratings, sep=sep, names=["user", "item", "rating", "timestamp"], required=["user", "item", "timestamp"],
        encoding=encoding, encoding_errors=encoding_errors, on_bad_rows=on_bad_rows, report=report, stage=stage,
        quoting=False,
    )
    titles_file = Path(titles_path) if titles_path is not None else directory / default_titles
    if not titles_file.is_file():
        raise FileNotFoundError(f"{titles_file}: MovieLens title file not found (pass titles_path)")
    titles = read_movielens_titles(titles_file, report, encoding, encoding_errors, on_bad_rows)
    frame["item"] = frame["item"].str.strip()
    frame = handle_unknown_items(frame, "item", titles.index, unknown_items, ratings, report, stage)
    frame, timestamps = parse_int(frame, "timestamp", ratings, on_bad_rows, report, stage)
    interactions = pd.DataFrame({"user": frame["user"].str.strip(), "item": frame["item"], "timestamp": timestamps})
    return RawInteractions(interactions, titles, name=directory.name, report=report)
