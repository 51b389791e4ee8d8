"""Generic interaction tables (CSV/TSV, JSON lines, Parquet) read through a column mapping.

Why: users' own logs come in many shapes; naming the user, item, time and title columns is enough to bring any
of them into the same pipeline, with the same error-or-count handling of bad rows as the built-in formats.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llm_srec.modeling.processing_llm_srec import MAX_UNIX_SECONDS

from .raw import NO_TIMESTAMP, RawInteractions
from .report import DropReport
from .textio import (
    LINE,
    BadRows,
    EncodingErrors,
    UnknownItems,
    handle_unknown_items,
    read_delimited,
    read_jsonl,
    reject_rows,
    require_file,
    value_text,
)

logger = logging.getLogger(__name__)

FileFormat = Literal["csv", "tsv", "jsonl", "parquet"]
TimeUnit = Literal["s", "ms", "us", "ns", "iso"]
_UNIT_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
MIN_UNIX_SECONDS = 100_000_000  # 1973-03-03: a time column entirely below it holds positions, not dates
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path) -> FileFormat:
    """The table format from the file suffix (a trailing `.gz` is ignored)."""
    suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if suffix not in _SUFFIX_FORMAT:
        raise ValueError(f"{path}: cannot tell the format from {suffix!r}; pass file_format (csv, tsv, jsonl, parquet)")
    return _SUFFIX_FORMAT[suffix]  # type: ignore[return-value]


def _read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` of a Parquet file as `value_text` strings (timestamps kept as such); a column of lists or structs
    is refused, since its text ("['i1']") would silently become an id."""
    try:
        found = pq.read_schema(path).names
        missing = [c for c in columns if c not in found]
        if missing:
            raise ValueError(f"{path}: missing required column(s) {missing}; the file has {found}")
        table = pq.read_table(path, columns=list(columns))
    except pa.ArrowException as error:
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    for column in columns:
        kind = table.schema.field(column).type
        if pa.types.is_nested(kind):
            raise ValueError(f"{path}: column {column!r} holds {kind} values, not one value per row; flatten it "
                             "(one row per interaction) first")
    return pd.DataFrame({
        c: table.column(c).to_pandas() if pa.types.is_timestamp(table.column(c).type)
        else pd.Series([value_text(v) for v in table.column(c).to_pylist()], dtype=object)
        for c in columns
    })


def read_table(
    path: Path, columns: Sequence[str], file_format: FileFormat | None, sep: str | None, encoding: str,
    encoding_errors: EncodingErrors, on_bad_rows: BadRows, report: DropReport, stage: str,
    allow_empty: Sequence[str] = (),
) -> tuple[pd.DataFrame, str]:
    """`columns` of a table as str-or-None plus `_line`, and the location noun ("line" or "row") for errors."""
    path = Path(path)
    require_file(path)
    file_format = file_format or detect_format(path)
    if file_format in ("csv", "tsv"):
        frame = read_delimited(path, sep=sep or ("," if file_format == "csv" else "\t"), required=columns,
                               encoding=encoding, encoding_errors=encoding_errors, on_bad_rows=on_bad_rows,
                               report=report, stage=stage, allow_empty=allow_empty)
        return frame, "line"
    if file_format == "jsonl":
        frame = read_jsonl(path, columns=columns, encoding=encoding, encoding_errors=encoding_errors,
                           on_bad_rows=on_bad_rows, report=report, stage=stage)
        return frame, "line"
    if file_format == "parquet":
        frame = _read_parquet(path, columns)
        frame[LINE] = np.arange(1, len(frame) + 1, dtype=np.int64)
        return frame, "row"
    raise ValueError(f"unknown file_format {file_format!r}; choose csv, tsv, jsonl or parquet")


def parse_times(
    frame: pd.DataFrame, column: str, unit: TimeUnit, path: Path, on_bad_rows: BadRows, report: DropReport,
    stage: str, location: str,
) -> tuple[pd.DataFrame, np.ndarray, bool]:
    """Unix seconds from numbers in `unit` or ISO-8601 text ("iso"), and whether they are only an order.

    Unparsable, empty, negative and after-year-5000 times are bad rows. Numbers that are all below
    `MIN_UNIX_SECONDS` (1973) are positions or sequence numbers rather than dates: they still order each user's
    interactions, but the third value is True so no prompt shows them as 1970 dates (noted in the report).
    """
    values = frame[column]
    dates = unit == "iso" or pd.api.types.is_datetime64_any_dtype(values)
    if dates:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        bad = parsed.isna().to_numpy()
        epoch = pd.Timestamp(0, tz="UTC")
        seconds = ((parsed[~bad] - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.float64)
        problem = "not an ISO-8601 time"
    elif unit in _UNIT_DIVISOR:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(numbers)
        seconds = numbers[~bad] / _UNIT_DIVISOR[unit]
        problem = f"not a number (time unit {unit})"
    else:
        raise ValueError(f"unknown time unit {unit!r}; choose s, ms, us, ns or iso")
    frame = reject_rows(frame, bad, path, column, problem, on_bad_rows, report, stage, location=location)
    units = list(_UNIT_DIVISOR)
    finer = units[units.index(unit) + 1:] if unit in units else []
    problem = f"after the year 5000: not a unix time in {_UNIT_NAME.get(unit, 'seconds')}" + (
        f"; pass time_unit (--time-unit) {'/'.join(finer)}" if finer else "")
    too_late = seconds > MAX_UNIX_SECONDS
    frame = reject_rows(frame, too_late, path, column, problem, on_bad_rows, report, stage, location=location)
    seconds = seconds[~too_late]
    negative = seconds < 0
    frame = reject_rows(frame, negative, path, column, "before 1970 (negative unix time)", on_bad_rows, report,
                        stage, location=location)
    seconds = seconds[~negative]
    order_only = not dates and len(seconds) > 0 and float(seconds.max()) < MIN_UNIX_SECONDS
    if order_only:
        note = (f"{path.name}, column {column!r}: every time is before 1973 (< {MIN_UNIX_SECONDS:,} unix seconds), "
                "so these are positions, not dates: they order the interactions and prompts show no time")
        logger.warning("%s", note)
        report.add(stage, "time_column_is_order", len(seconds), "interactions", "note", note)
    return frame, np.floor(seconds).astype(np.int64), order_only


def _titles_from(frame: pd.DataFrame, item_column: str, title_column: str, report: DropReport) -> pd.Series:
    """First non-empty title per item; items whose rows disagree are counted."""
    pairs = frame[[item_column, title_column]]
    pairs = pairs[pairs[title_column].notna() & (pairs[title_column].astype(str).str.strip() != "")]
    distinct = pairs.drop_duplicates()
    conflicts = int(distinct[item_column].duplicated().sum())
    report.add("read_titles", "conflicting_titles", conflicts, "items", "note",
               "an item has several different titles; the first one is used")
    first = distinct.drop_duplicates(subset=[item_column], keep="first")
    return pd.Series(first[title_column].to_numpy(object), index=first[item_column].to_numpy(object), dtype=object)


def load_tabular(
    path: str | Path,
    *,
    user_column: str,
    item_column: str,
    time_column: str | None = None,
    title_column: str | None = None,
    titles_path: str | Path | None = None,
    titles_item_column: str | None = None,
    file_format: FileFormat | None = None,
    sep: str | None = None,
    time_unit: TimeUnit = "s",
    encoding: str = "utf-8",
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    unknown_items: UnknownItems = "keep",
) -> RawInteractions:
    """Read interactions from a table through a column mapping.

    Without `time_column` the row order is the time order. Titles come from `title_column` of the interaction
    table, or from a separate `titles_path` table (columns `titles_item_column` (default `item_column`) and
    `title_column` (default "title")); the same format rules apply to both files.
    """
    path = Path(path)
    report = DropReport()
    stage = "read_interactions"
    inline_title = title_column if titles_path is None else None
    columns = [c for c in (user_column, item_column, time_column, inline_title) if c is not None]
    if len(set(columns)) != len(columns):
        raise ValueError(f"the column mapping names a column twice: {columns}")
    frame, location = read_table(path, columns, file_format, sep, encoding, encoding_errors, on_bad_rows, report,
                                 stage, allow_empty=[inline_title] if inline_title else [])
    for column in (user_column, item_column):
        empty = frame[column].isna().to_numpy() | (frame[column].astype(str).str.strip() == "").to_numpy()
        frame = reject_rows(frame, empty, path, column, "empty", on_bad_rows, report, stage, location=location)
        frame[column] = frame[column].astype(str).str.strip()
    titles = None
    if titles_path is not None:
        key, title = titles_item_column or item_column, title_column or "title"
        table, _ = read_table(Path(titles_path), [key, title], None, sep, encoding, encoding_errors, on_bad_rows,
                              report, "read_titles", allow_empty=[title])
        table[key] = table[key].astype(str).str.strip()
        titles = _titles_from(table, key, title, report)
    elif title_column is not None:
        titles = _titles_from(frame, item_column, title_column, report)
    if titles is not None:
        frame = handle_unknown_items(frame, item_column, titles.index, unknown_items, path, report, stage, location)
    order_only = False
    if time_column is None:
        timestamps = np.full(len(frame), NO_TIMESTAMP, dtype=np.int64)
    else:
        frame, timestamps, order_only = parse_times(frame, time_column, time_unit, path, on_bad_rows, report, stage,
                                                    location)
    interactions = pd.DataFrame({"user": frame[user_column].to_numpy(object),
                                 "item": frame[item_column].to_numpy(object), "timestamp": timestamps})
    return RawInteractions(interactions, titles, name=path.name.split(".")[0], report=report,
                           time_is_order=order_only)
