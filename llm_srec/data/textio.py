"""Reading delimited text files fast (pandas' C parser) while still naming the file, line and column of bad input.

Why: the hot path (ML-1M, Amazon CSVs) must be vectorised, yet every malformed row must either raise an error that
points at it or be skipped and counted. `read_delimited` keeps a `_line` column (1-based physical line) so later
checks can name the line, and `reject_rows` applies the error-or-skip policy in one place.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
import re
import warnings
import zlib
from pathlib import Path
from typing import IO, Callable, Literal, Sequence, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from .report import DropReport

BadRows = Literal["error", "skip"]
EncodingErrors = Literal["strict", "replace"]
LINE = "_line"
_MULTI_SEP = "\x1f"  # stands in for multi-character separators such as MovieLens' "::"
_SKIPPED = re.compile(r"Skipping line (\d+)")
_C_ERROR_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


_Reader = TypeVar("_Reader", bound=Callable[..., pd.DataFrame])


def require_file(path: Path) -> None:
    """Refuse a path that is a folder or does not exist, saying which (open() would raise "Is a directory")."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a file; pass the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def names_the_file(read: _Reader) -> _Reader:
    """Make the decompression errors of ``read(path, ...)`` name the file: gzip says only "Not a gzipped file" and a
    truncated gzip raises a bare EOFError."""
    @functools.wraps(read)
    def wrapper(path: Path, *args: object, **kwargs: object) -> pd.DataFrame:
        try:
            return read(path, *args, **kwargs)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: not a readable gzip file ({error})") from None

    return wrapper  # type: ignore[return-value]


def value_text(value: object) -> str | None:
    """The one text form of an id or value read from a typed source (JSON, Parquet): None for null/NaN, integral
    floats without ".0" (so 7 and 7.0 are one item whichever reader saw them), anything else as `str`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently un-gzipping `*.gz`."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _undecodable_lines(path: Path, encoding: str) -> list[tuple[int, int, int]]:
    """(line, byte column, byte) of every line that does not decode; only run on error/replace paths."""
    bad = []
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as error:
                bad.append((number, error.start + 1, raw[error.start]))
    return bad


def _decode_error(path: Path, encoding: str) -> ValueError:
    located = _undecodable_lines(path, encoding)
    where = f"line {located[0][0]}, byte column {located[0][1]}: byte 0x{located[0][2]:02X}" if located else "somewhere"
    return ValueError(
        f"{path}: {where} is not valid {encoding} ({len(located)} such line(s)); pass the file's real encoding "
        f"or encoding_errors='replace' to replace the bytes and count the lines"
    )


def _column_error(path: Path, missing: Sequence[str], found: Sequence[str]) -> ValueError:
    return ValueError(f"{path}: missing required column(s) {list(missing)}; the header has {list(found)}")


def read_header(path: Path, sep: str, encoding: str, encoding_errors: EncodingErrors = "strict") -> list[str]:
    """The first line split on `sep` (for checking required columns before a big read)."""
    with open_binary(path) as handle:
        first = handle.readline()
    try:
        text = first.decode(encoding, errors=encoding_errors)
    except UnicodeDecodeError:
        raise _decode_error(path, encoding) from None
    return [name.strip().strip('"') for name in text.removeprefix("\ufeff").rstrip("\r\n").split(sep)]


def _check_no_extra_fields(path: Path, sep: str, names: Sequence[str], encoding: str) -> None:
    """Refuse a headerless file whose first line has more fields than ``names``: pandas would silently take the
    leading fields as an index (``user item timestamp`` lines read as ``user item`` make the timestamps the items)."""
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                fields = raw.decode(encoding, errors="replace").rstrip("\r\n").split(sep)
                if len(fields) > len(names):
                    raise ValueError(f"{path}: line {number}: expected {len(names)} fields ({' '.join(names)}), "
                                     f"found {len(fields)}; the file has more columns than this format")
                return


@names_the_file
def read_delimited(
    path: Path,
    *,
    sep: str,
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    encoding: str = "utf-8",
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    report: DropReport,
    stage: str,
    quoting: bool = True,
    allow_empty: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited file as strings (never NaN: absent fields are "").

    `names` given: the file has no header and these are its columns (extra fields on a line are malformed).
    `names` None: the first line is the header and must contain every `required` column.
    Only `required` columns (or all `names`) are returned, plus `_line`. Blank lines are skipped and counted; an
    empty field is a malformed row unless its column is in `allow_empty`.
    """
    path = Path(path)
    require_file(path)
    header_lines = 0 if names is not None else 1
    if names is not None:
        _check_no_extra_fields(path, sep, names, encoding)
    else:
        found = read_header(path, sep, encoding, encoding_errors)
        missing = [name for name in required if name not in found]
        if missing:
            raise _column_error(path, missing, found)

    source: Path | io.StringIO = path
    if len(sep) > 1:  # the C parser only takes one-character separators
        with open_binary(path) as handle:
            data = handle.read()
        try:
            text = data.decode(encoding, errors=encoding_errors)
        except UnicodeDecodeError:
            raise _decode_error(path, encoding) from None
        source, sep = io.StringIO(text.replace(sep, _MULTI_SEP)), _MULTI_SEP

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(
                source,
                sep=sep,
                header=None if names is not None else 0,
                names=list(names) if names is not None else None,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                encoding=encoding,
                encoding_errors=encoding_errors,
                on_bad_lines="warn" if on_bad_rows == "skip" else "error",
                quoting=0 if quoting else 3,
                engine="c",
                compression="gzip" if path.suffix == ".gz" and isinstance(source, Path) else None,
            )
        except UnicodeDecodeError:
            raise _decode_error(path, encoding) from None
        except pd.errors.ParserError as error:
            match = _C_ERROR_LINE.search(str(error))
            if match:
                expected, line, saw = match.groups()
                raise ValueError(f"{path}: line {line}: expected {expected} fields, found {saw}") from None
            raise ValueError(f"{path}: {error}") from None
    skipped = sorted(int(n) for w in caught for n in _SKIPPED.findall(str(w.message)))
    report.add(stage, "malformed_row_wrong_field_count", len(skipped), "lines", detail=path.name)

    if skipped:  # rebuild exact physical line numbers around the lines pandas skipped
        all_lines = np.arange(1 + header_lines, len(frame) + len(skipped) + 1 + header_lines, dtype=np.int64)
        lines = np.setdiff1d(all_lines, np.asarray(skipped, dtype=np.int64), assume_unique=True)
    else:
        lines = np.arange(1 + header_lines, len(frame) + 1 + header_lines, dtype=np.int64)
    blank = np.logical_and.reduce([(frame[c] == "").to_numpy(dtype=bool) for c in frame.columns])
    if required:  # select after reading: pandas' usecols would silently accept lines with extra fields
        frame = frame[list(required)]
    frame[LINE] = lines
    if encoding_errors == "replace":
        replaced = _undecodable_lines(path, encoding)
        report.add(stage, "undecodable_bytes_replaced", len(replaced), "lines", "changed", path.name)
    if blank.any():
        report.add(stage, "blank_line", int(blank.sum()), "lines", detail=path.name)
        frame = frame.loc[~blank].reset_index(drop=True)
    for column in (c for c in frame.columns if c != LINE and c not in allow_empty):
        frame = reject_rows(frame, (frame[column] == "").to_numpy(dtype=bool), path, column,
                            "empty field (too few fields on the line?)", on_bad_rows, report, stage)
    return frame


def reject_rows(
    frame: pd.DataFrame,
    bad: np.ndarray,
    path: Path,
    column: str,
    problem: str,
    on_bad_rows: BadRows,
    report: DropReport,
    stage: str,
    reason: str = "malformed_row",
    location: str = "line",
) -> pd.DataFrame:
    """Raise on the first `bad` row (naming file, `location` number and column) or drop and count all of them."""
    if not bad.any():
        return frame
    if on_bad_rows == "error":
        first = int(np.flatnonzero(bad)[0])
        value = frame[column].iloc[first]
        raise ValueError(
            f"{path}: {location} {int(frame[LINE].iloc[first])}, column {column!r}: {problem}: {value!r} "
            f"({int(bad.sum())} such row(s); on_bad_rows='skip' drops and counts them)"
        )
    report.add(stage, reason, int(bad.sum()), "lines", detail=f"{path.name}, column {column!r}: {problem}")
    return frame.loc[~bad].reset_index(drop=True)


def parse_int(
    frame: pd.DataFrame, column: str, path: Path, on_bad_rows: BadRows, report: DropReport, stage: str,
    location: str = "line",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse a column of decimal integers exactly (no float round trip); returns the kept frame and the values."""
    bad = ~frame[column].str.fullmatch(r"\s*[+-]?\d{1,18}\s*").to_numpy(dtype=bool, na_value=False)
    frame = reject_rows(frame, bad, path, column, "not an integer", on_bad_rows, report, stage,
                        location=location)
    return frame, pd.to_numeric(frame[column].str.strip()).to_numpy(dtype=np.int64)


UnknownItems = Literal["keep", "drop", "error"]


def handle_unknown_items(
    frame: pd.DataFrame, column: str, known: pd.Index, policy: UnknownItems, path: Path, report: DropReport,
    stage: str, location: str = "line",
) -> pd.DataFrame:
    """Interactions whose item is not in the metadata: "keep" (placeholder title, counted later), "drop"
    (counted as `unknown_item`) or "error" (names the first such line)."""
    if policy == "keep":
        return frame
    if policy not in ("drop", "error"):
        raise ValueError(f"unknown_items must be keep, drop or error, got {policy!r}")
    unknown = ~frame[column].isin(known).to_numpy()
    return reject_rows(
        frame, unknown, path, column, "item has no metadata entry", "skip" if policy == "drop" else "error",
        report, stage, reason="unknown_item", location=location,
    )


def _count_lines(path: Path) -> int:
    """Number of lines (a last line without a newline counts), streamed in 16 MiB chunks."""
    lines, last = 0, b"\n"
    with open_binary(path) as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _jsonl_slow(
    path: Path, columns: Sequence[str], encoding: str, encoding_errors: EncodingErrors, on_bad_rows: BadRows,
    report: DropReport, stage: str,
) -> pd.DataFrame:
    """Line-by-line JSONL parse that names the line of every problem (used when the fast path cannot)."""
    values: dict[str, list[object]] = {column: [] for column in columns}
    lines: list[int] = []
    counts = {"blank_line": 0, "malformed_row_invalid_json": 0, "malformed_row_not_an_object": 0,
              "malformed_row_nested_value": 0, "undecodable_bytes_replaced": 0}

    def bad(reason: str, number: int, message: str) -> None:
        if on_bad_rows == "error":
            raise ValueError(f"{path}: line {number}: {message} (on_bad_rows='skip' drops and counts such lines)")
        counts[reason] += 1

    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as error:
                if encoding_errors == "strict":
                    raise ValueError(
                        f"{path}: line {number}, byte column {error.start + 1}: byte 0x{raw[error.start]:02X} is not "
                        f"valid {encoding}; pass encoding_errors='replace' to replace the bytes and count the lines"
                    ) from None
                counts["undecodable_bytes_replaced"] += 1
                text = raw.decode(encoding, errors="replace")
            if not text.strip():
                counts["blank_line"] += 1
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                bad("malformed_row_invalid_json", number, f"invalid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(record, dict):
                bad("malformed_row_not_an_object", number, "a JSON object is expected on every line")
                continue
            picked = [record.get(column) for column in columns]
            nested = [c for c, v in zip(columns, picked) if isinstance(v, (dict, list))]
            if nested:
                bad("malformed_row_nested_value", number, f"field {nested[0]!r} holds a list/object, not a value")
                continue
            for column, value in zip(columns, picked):
                values[column].append(value_text(value))
            lines.append(number)
    for reason, count in counts.items():
        kind = "changed" if reason == "undecodable_bytes_replaced" else "dropped"
        report.add(stage, reason, count, "lines", kind, path.name)
    frame = pd.DataFrame({column: pd.Series(vals, dtype=object) for column, vals in values.items()})
    frame[LINE] = np.asarray(lines, dtype=np.int64)
    return frame


@names_the_file
def read_jsonl(
    path: Path,
    *,
    columns: Sequence[str],
    encoding: str = "utf-8",
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    report: DropReport,
    stage: str,
) -> pd.DataFrame:
    """Read `columns` of a JSON-lines file as str-or-None (absent key / null -> None), plus `_line`.

    Fast path: pyarrow's JSON reader with an explicit string schema (other fields are ignored, so multi-GB
    metadata files stay cheap). Anything it cannot take cleanly (blank lines, invalid JSON, numbers where strings
    were expected, bad bytes) goes through the line-by-line reader, which names the line or skips and counts.
    """
    path = Path(path)
    require_file(path)
    schema = pa.schema([(column, pa.string()) for column in columns])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        stream = pa.input_stream(str(path), compression="gzip" if path.suffix == ".gz" else None)
        table = pa_json.read_json(stream, parse_options=options) if encoding.lower() in ("utf-8", "utf8") else None
        if table is not None:
            table.validate(full=True)  # the reader lets invalid UTF-8 through into string columns
    except (pa.ArrowException, UnicodeDecodeError):
        table = None
    if table is None or table.num_rows != _count_lines(path):
        frame = _jsonl_slow(path, columns, encoding, encoding_errors, on_bad_rows, report, stage)
    else:
        frame = pd.DataFrame({column: table.column(column).to_numpy(zero_copy_only=False).astype(object)
                              for column in columns})
        frame[LINE] = np.arange(1, len(frame) + 1, dtype=np.int64)
    present = [column for column in columns if frame[column].notna().any()]
    if len(frame) and len(present) < len(columns):
        raise _column_error(path, [c for c in columns if c not in present], ["(keys of the JSON objects)"])
    return frame
