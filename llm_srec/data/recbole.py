"""RecBole atomic files: `<name>.inter` (one interaction per row) or pre-split sequential files
`<name>.{train,valid,test}.inter` (`user_id`, `item_id_list`, `item_id`), with titles from `<name>.item` or the
UniSRec `<name>.text`, and optional `<name>.user2index`/`<name>.item2index` id maps.

Why the reconstruction: pre-split files hold (history window, target) rows rather than sequences; the full
chronological sequence of each user is rebuilt by chaining windows (histories may be capped, e.g. at 50 items) and
then re-split leave-last-out like every other source, so all sources share one split definition.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .raw import NO_TIMESTAMP, RawInteractions
from .report import DropReport
from .tabular import parse_times
from .textio import (
    LINE,
    BadRows,
    EncodingErrors,
    UnknownItems,
    handle_unknown_items,
    read_delimited,
    read_header,
    reject_rows,
)
from .titles import cut_at_markers

logger = logging.getLogger(__name__)

PRESPLIT = ("train", "valid", "test")  # by window length: the test windows are the longest (the full sequences)
TITLE_FIELDS = ("title", "movie_title", "text")
Window = tuple[tuple[str, ...], str, str]  # (history, target, "file:line")


def _dataset_name(directory: Path) -> str:
    names = sorted({p.name.split(".")[0] for p in directory.glob("*.inter")})
    if len(names) != 1:
        raise FileNotFoundError(
            f"{directory}: expected the .inter files of exactly one dataset, found {names or 'none'}; pass dataset="
        )
    return names[0]


def _read_atomic(
    path: Path, fields: Sequence[str], optional: Sequence[str], encoding: str, encoding_errors: EncodingErrors,
    on_bad_rows: BadRows, report: DropReport, stage: str,
) -> pd.DataFrame:
    """Read a tab-separated atomic file whose header is `name:type`; returns columns renamed to bare names."""
    header = read_header(path, "\t", encoding, encoding_errors)
    by_name = {column.split(":")[0]: column for column in header}
    missing = [f for f in fields if f not in by_name]
    if missing:
        raise ValueError(f"{path}: missing required field(s) {missing}; the header has {header}")
    wanted = [by_name[f] for f in (*fields, *optional) if f in by_name]
    frame = read_delimited(
        path, sep="\t", required=wanted, encoding=encoding, encoding_errors=encoding_errors,
        on_bad_rows=on_bad_rows, report=report, stage=stage, quoting=False,
    )
    return frame.rename(columns={column: column.split(":")[0] for column in wanted})


def _read_index(path: Path, encoding: str, report: DropReport) -> pd.Series:
    """`external \\t index` lines -> Series index(str) -> external id."""
    frame = read_delimited(path, sep="\t", names=["external", "index"], required=["external", "index"],
                           encoding=encoding, report=report, stage="read_id_map", quoting=False)
    return pd.Series(frame["external"].to_numpy(object), index=frame["index"].str.strip().to_numpy(object))


def _map_ids(
    frame: pd.DataFrame, column: str, mapping: pd.Series | None, path: Path, on_bad_rows: BadRows,
    report: DropReport, stage: str,
) -> pd.DataFrame:
    """Replace index tokens by external ids; rows naming an index absent from the map are bad rows."""
    if mapping is None:
        return frame
    unknown = ~frame[column].isin(mapping.index).to_numpy()
    frame = reject_rows(frame, unknown, path, column, f"index not in the {column} map", on_bad_rows, report, stage,
                        reason=f"unknown_{column.removesuffix('_id')}_index")
    frame[column] = mapping.reindex(frame[column].to_numpy()).to_numpy(object)
    return frame


def _stitch(windows: list[Window], cap: int) -> list[str]:
    """Rebuild one user's sequence from (history, target) windows in any order.

    Start from the shortest history; repeatedly append the target of the window whose history equals the whole
    sequence so far, or, for histories of the cap length, its last `cap` items. Conflicting or unused windows are
    errors naming their file and line.
    """
    by_history: dict[tuple[str, ...], list[int]] = {}
    for index, (history, _, _) in enumerate(windows):
        by_history.setdefault(history, []).append(index)
    start = min(range(len(windows)), key=lambda i: (len(windows[i][0]), i))
    sequence = [*windows[start][0], windows[start][1]]
    used = {start}
    while True:
        key = tuple(sequence[-cap:]) if len(sequence) >= cap else tuple(sequence)
        matches = [i for i in by_history.get(key, ()) if i not in used]
        if not matches:
            break
        targets = {windows[i][1] for i in matches}
        if len(targets) > 1:
            where = ", ".join(windows[i][2] for i in matches)
            raise ValueError(f"pre-split rows disagree on the next item after the same history ({where})")
        sequence.append(targets.pop())
        used.update(matches)
    unused = [windows[i][2] for i in range(len(windows)) if i not in used]
    if unused:
        raise ValueError(
            f"pre-split rows do not chain into one sequence: {len(unused)} row(s) fit nowhere, first {unused[0]}"
        )
    return sequence


def _read_presplit(
    directory: Path, name: str, paths: list[Path], user_map: pd.Series | None, item_map: pd.Series | None,
    encoding: str, encoding_errors: EncodingErrors, on_bad_rows: BadRows, report: DropReport,
) -> pd.DataFrame:
    stage = "read_interactions"
    parts = []
    for path in paths:
        frame = _read_atomic(path, ["user_id", "item_id_list", "item_id"], [], encoding, encoding_errors,
                             on_bad_rows, report, stage)
        frame = _map_ids(frame, "user_id", user_map, path, on_bad_rows, report, stage)
        histories = frame["item_id_list"].str.split().to_list()
        if item_map is not None:  # a window with any unknown item cannot be chained; it is a bad row
            known = set(item_map.index)
            for column, bad in (
                ("item_id", ~frame["item_id"].isin(item_map.index).to_numpy()),
                ("item_id_list", np.array([any(i not in known for i in h) for h in histories], dtype=bool)),
            ):
                keep = ~bad
                frame = reject_rows(frame, bad, path, column, "index not in the item map", on_bad_rows, report,
                                    stage, reason="unknown_item_index")
                histories = [h for h, k in zip(histories, keep) if k]
            lookup = item_map.to_dict()
            histories = [tuple(lookup[i] for i in h) for h in frame["item_id_list"].str.split().to_list()]
            targets = item_map.reindex(frame["item_id"].to_numpy()).to_list()
        else:
            histories = [tuple(h) for h in histories]
            targets = frame["item_id"].str.strip().to_list()
        locations = [f"{path.name}:{line}" for line in frame[LINE].to_list()]
        parts.append(zip(frame["user_id"].to_list(), histories, targets, locations))
    windows_by_user: dict[str, list[Window]] = {}
    for user, history, target, where in (row for part in parts for row in part):
        windows_by_user.setdefault(user, []).append((history, target, where))
    if not windows_by_user:
        raise ValueError(f"{directory}: the pre-split {name} files hold no rows")
    num_rows = sum(len(windows) for windows in windows_by_user.values())
    cap = max(len(w[0]) for windows in windows_by_user.values() for w in windows)
    users, items = [], []
    for user, windows in windows_by_user.items():
        try:
            sequence = _stitch(windows, cap)
        except ValueError as error:
            raise ValueError(f"{directory / name}: user {user!r}: {error}") from None
        users.extend([user] * len(sequence))
        items.extend(sequence)
    report.add(stage, "presplit_windows_merged", num_rows, "rows", "note",
               f"{num_rows} (history, target) rows rebuilt into {len(items)} interactions")
    return pd.DataFrame({"user": users, "item": items,
                         "timestamp": np.full(len(items), NO_TIMESTAMP, dtype=np.int64)})


def _titles_path(directory: Path, name: str, report: DropReport) -> Path | None:
    """`<name>.item` or `<name>.text`; else the folder's only `.item`/`.text` file (a note), None when it has none.

    Why: a title file named after another prefix (e.g. `Games.item` next to `Games-6k.*.inter`) would otherwise be
    ignored and every item would get a placeholder title.
    """
    path = next((p for p in (directory / f"{name}.item", directory / f"{name}.text") if p.is_file()), None)
    if path is not None:
        return path
    others = sorted(p for suffix in ("item", "text") for p in directory.glob(f"*.{suffix}") if p.is_file())
    if len(others) > 1:
        raise FileNotFoundError(
            f"{directory}: no {name}.item or {name}.text, and several title files of other names "
            f"{[p.name for p in others]}; pass titles_path (--titles-path) to pick one"
        )
    if others:
        note = f"no {name}.item or {name}.text: titles read from {others[0].name}, the folder's only title file"
        logger.warning("%s: %s", directory, note)
        report.add("read_titles", "title_file_of_another_name", 1, "files", "note", note)
    return others[0] if others else None


def _read_titles(
    path: Path, title_field: str | None, markers: Sequence[str], encoding: str, encoding_errors: EncodingErrors,
    on_bad_rows: BadRows, report: DropReport,
) -> pd.Series:
    header = [column.split(":")[0] for column in read_header(path, "\t", encoding, encoding_errors)]
    field = title_field or next((f for f in TITLE_FIELDS if f in header), None)
    if field is None:
        raise ValueError(f"{path}: no title field among {list(TITLE_FIELDS)} in {header}; pass title_field")
    frame = _read_atomic(path, ["item_id", field], [], encoding, encoding_errors, on_bad_rows, report,
                         "read_titles")
    titles = frame[field].to_list()
    if markers:
        cut = [cut_at_markers(title, markers) for title in titles]
        titles = [title for title, _ in cut]
        report.add("read_titles", "title_end_marker_not_found", sum(not found for _, found in cut), "items",
                   "note", f"whole {field!r} text kept as the title (markers {list(markers)})")
    return pd.Series(titles, index=frame["item_id"].str.strip().to_numpy(object), dtype=object)


def load_recbole(
    path: str | Path,
    *,
    dataset: str | None = None,
    title_field: str | None = None,
    title_end_markers: Sequence[str] = (),
    titles_path: str | Path | None = None,
    encoding: str = "utf-8",
    encoding_errors: EncodingErrors = "strict",
    on_bad_rows: BadRows = "error",
    unknown_items: UnknownItems = "keep",
) -> RawInteractions:
    """Read a RecBole dataset folder (see the module docstring).

    `title_field`: the `.item`/`.text` column holding titles (default: title, movie_title or text).
    `title_end_markers`: cut each title before the earliest marker, e.g. UniSRec's `.text` joins
    "title. categories. brand" so `(". Industrial & Scientific", ". . ")` recovers the title.
    `titles_path`: the `.item`/`.text` file to read titles from (default: `<dataset>.item`, `<dataset>.text`, or the
    folder's only such file).
    Pre-split input needs `<dataset>.test.inter` (its windows are the longest); the train/valid files are optional.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a folder")
    name = dataset or _dataset_name(directory)
    report = DropReport()
    maps = {}
    for kind in ("user", "item"):
        map_path = directory / f"{name}.{kind}2index"
        maps[kind] = _read_index(map_path, encoding, report) if map_path.is_file() else None
    title_file = Path(titles_path) if titles_path is not None else _titles_path(directory, name, report)
    titles = None if title_file is None else _read_titles(title_file, title_field, title_end_markers, encoding,
                                                          encoding_errors, on_bad_rows, report)
    single = directory / f"{name}.inter"
    presplit = [directory / f"{name}.{split}.inter" for split in PRESPLIT]
    order_only = False  # whether the .inter timestamps are positions, not unix seconds
    if single.is_file():
        stage = "read_interactions"
        frame = _read_atomic(single, ["user_id", "item_id"], ["timestamp"], encoding, encoding_errors,
                             on_bad_rows, report, stage)
        frame = _map_ids(frame, "user_id", maps["user"], single, on_bad_rows, report, stage)
        frame = _map_ids(frame, "item_id", maps["item"], single, on_bad_rows, report, stage)
        if titles is not None:
            frame = handle_unknown_items(frame, "item_id", titles.index, unknown_items, single, report, stage)
        if "timestamp" in frame.columns:
            frame, timestamps, order_only = parse_times(frame, "timestamp", "s", single, on_bad_rows, report, stage,
                                                        "line")
        else:
            timestamps = np.full(len(frame), NO_TIMESTAMP, dtype=np.int64)
        interactions = pd.DataFrame({"user": frame["user_id"].to_numpy(object),
                                     "item": frame["item_id"].str.strip().to_numpy(object),
                                     "timestamp": timestamps})
    elif presplit[-1].is_file():
        absent = [path.name for path in presplit if not path.is_file()]
        report.add("read_interactions", "presplit_file_absent", len(absent), "files", "note",
                   f"{', '.join(absent)} absent: sequences rebuilt from the other windows (a history cut at the "
                   "window cap loses its older items)")
        interactions = _read_presplit(directory, name, [path for path in presplit if path.is_file()], maps["user"],
                                      maps["item"], encoding, encoding_errors, on_bad_rows, report)
        if titles is not None and unknown_items != "keep":
            unknown = ~interactions["item"].isin(titles.index).to_numpy()
            if unknown.any() and unknown_items == "error":
                raise ValueError(f"{directory / name}: item {interactions['item'][unknown].iloc[0]!r} has no title "
                                 f"entry ({int(unknown.sum())} such interactions)")
            report.add("read_interactions", "unknown_item", int(unknown.sum()), "interactions")
            interactions = interactions.loc[~unknown].reset_index(drop=True)
    else:
        found = [path.name for path in presplit if path.is_file()]
        raise FileNotFoundError(
            f"{directory}: neither {single.name} nor {presplit[-1].name} found"
            + (f" (only {', '.join(found)}: pre-split input needs the {PRESPLIT[-1]} windows, the longest)"
               if found else "")
        )
    return RawInteractions(interactions, titles, name=name, report=report, time_is_order=order_only)
