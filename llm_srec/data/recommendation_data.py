"""`RecommendationData`: the prepared dataset every later stage consumes (splits, user sequences, item catalog,
drop report).

Why one object: training, evaluation and the probes all need the same things (leave-last-out splits, the
id -> title catalog, and the per-user known sequences for negative exclusion), and they must be saved and reloaded
together as Arrow + JSON without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from llm_srec.modeling.catalog_llm_srec import ITEM_CATALOG_NAME, ItemCatalog
from llm_srec.modeling.saving_llm_srec import read_json

from .report import DropReport

SequenceEnd = Literal["train", "validation", "test"]
# how many trailing items each split's known sequence leaves out of the full sequence
_LEFT_OUT = {"train": 2, "validation": 1, "test": 0}
FORMAT_VERSION = 1
# what `save_to_disk` writes and `load_from_disk` needs
_PARTS = ("data_info.json", "drop_report.json", "splits", "user_sequences", f"catalog/{ITEM_CATALOG_NAME}")
_Loaded = TypeVar("_Loaded", Dataset, DatasetDict)


class RecommendationData:
    """Leave-last-out `splits` (DESIGN.md columns), `user_sequences` (one row per user: `user_id`, `user_index`,
    full chronological `items` and `timestamps`), `catalog` (internal id i -> external_ids[i-1], titles[i-1]),
    `drop_report`, and `info` (name, timestamps, preprocessing parameters).

    Users are `user_sequences` rows 0..num_users-1; a user with a single interaction has no split row.
    """

    def __init__(
        self,
        splits: DatasetDict,
        user_sequences: Dataset,
        catalog: ItemCatalog,
        drop_report: DropReport,
        info: dict[str, Any],
    ) -> None:
        missing = {"train", "validation", "test"} - set(splits)
        if missing:
            raise ValueError(f"splits lack {sorted(missing)}")
        self.splits = splits
        self.user_sequences = user_sequences
        self.catalog = catalog
        self.drop_report = drop_report
        self.info = info
        self._flat: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def num_items(self) -> int:
        return len(self.catalog)

    @property
    def num_users(self) -> int:
        return len(self.user_sequences)

    @property
    def has_timestamps(self) -> bool:
        return bool(self.info.get("has_timestamps", False))

    def _full_sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat items of every user's full sequence and the offsets (length num_users + 1), by user_index."""
        if self._flat is None:
            table = self.user_sequences.with_format("arrow")[:]
            if not np.array_equal(table["user_index"].to_numpy(), np.arange(table.num_rows)):
                raise ValueError("user_sequences rows must be in user_index order 0..num_users-1")
            items = table["items"].combine_chunks()
            lengths = items.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            self._flat = (items.flatten().to_numpy(zero_copy_only=False).astype(np.int32), offsets)
        return self._flat

    def sequences(self, upto: SequenceEnd = "test") -> list[np.ndarray]:
        """Known item sequence of every user (index = user_index) as seen at `upto`: "train" = s[:-2] (the training
        sequence), "validation" = s[:-1], "test" = s. Used to exclude known items from negatives."""
        flat, offsets = self._full_sequences()
        ends = offsets[1:] - _LEFT_OUT[upto]
        return [flat[start:max(start, end)] for start, end in zip(offsets[:-1], ends)]

    def item_counts(self, upto: SequenceEnd = "train") -> np.ndarray:
        """Interactions per internal item id (length num_items + 1, index 0 = padding = 0), e.g. for warm/cold."""
        flat, offsets = self._full_sequences()
        position = np.arange(len(flat)) - np.repeat(offsets[:-1], np.diff(offsets))
        length = np.repeat(np.diff(offsets), np.diff(offsets))
        kept = position < length - _LEFT_OUT[upto]
        return np.bincount(flat[kept], minlength=self.num_items + 1).astype(np.int64)

    def statistics(self) -> dict[str, Any]:
        """Table 10-style statistics of the full sequences, flat scalars named as DESIGN.md's
        `data_statistics.json` expects (so trainers can store them in a model folder unchanged)."""
        flat, offsets = self._full_sequences()
        lengths = np.diff(offsets)
        users, interactions = len(lengths), int(lengths.sum())
        return {
            "dataset": self.info.get("name", ""),
            "num_users": users,
            "num_items": self.num_items,
            "num_interactions": interactions,
            "avg_sequence_length": round(interactions / users, 4) if users else 0.0,
            "min_sequence_length": int(lengths.min()) if users else 0,
            "median_sequence_length": float(np.median(lengths)) if users else 0.0,
            "max_sequence_length": int(lengths.max()) if users else 0,
            "density": round(interactions / (users * self.num_items), 6) if users and self.num_items else 0.0,
            "has_timestamps": self.has_timestamps,
            **{f"num_{name}_rows": len(split) for name, split in self.splits.items()},
        }

    def save_to_disk(self, directory: str | Path) -> None:
        """Arrow splits (`splits/`) and sequences (`user_sequences/`), the catalog (`catalog/`), and JSON
        statistics, drop report and info."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # datasets writes an empty split as zero shards, which its own load_from_disk cannot read back
        shards = {name: None if len(split) else 1 for name, split in self.splits.items()}
        bars_were_on = not are_progress_bars_disabled()
        disable_progress_bars()  # a "Saving the dataset" bar per split is noise for a few MB
        try:
            self.splits.save_to_disk(str(directory / "splits"), num_shards=shards)
            self.user_sequences.save_to_disk(str(directory / "user_sequences"))
        finally:
            if bars_were_on:
                enable_progress_bars()
        self.catalog.save(directory / "catalog")
        _write_json(directory / "statistics.json", self.statistics())
        _write_json(directory / "drop_report.json", self.drop_report.to_dict())
        _write_json(directory / "data_info.json", {"format_version": FORMAT_VERSION, **self.info})

    @classmethod
    def load_from_disk(cls, directory: str | Path) -> RecommendationData:
        """Read a folder written by `save_to_disk`; a missing, partial or broken one is an error naming the part."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such folder; pass the --output-dir of prepare-data")
        missing = [part for part in _PARTS if not (directory / part).exists()]
        if missing:
            found = "an empty folder" if not any(directory.iterdir()) else f"no {', '.join(missing)}"
            raise FileNotFoundError(f"{directory}: not a prepared dataset ({found}); run prepare-data")
        info = read_json(directory / "data_info.json")
        if info.pop("format_version", None) != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported prepared-data format version")
        splits = _load_arrow(DatasetDict.load_from_disk, directory / "splits")
        user_sequences = _load_arrow(Dataset.load_from_disk, directory / "user_sequences")
        catalog = ItemCatalog.load(directory / "catalog")
        try:
            report = DropReport.from_dict(read_json(directory / "drop_report.json"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{directory / 'drop_report.json'} is not a drop report ({error!r})") from None
        return cls(splits, user_sequences, catalog, report, info)

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"RecommendationData({s['dataset']!r}: {s['num_users']:,} users, {s['num_items']:,} items, "
                f"{s['num_interactions']:,} interactions, timestamps={s['has_timestamps']})")


def _load_arrow(load: Callable[[str], _Loaded], folder: Path) -> _Loaded:
    """`datasets`' loader on `folder`, with its JSON files checked first and its failures naming the folder (it
    raises bare JSON errors, an OSError naming no file for a truncated one, and an IndexError for an empty split
    saved by older versions)."""
    for path in sorted(folder.rglob("*.json")):
        read_json(path)
    try:
        return load(str(folder))
    except (IndexError, KeyError, OSError, pa.ArrowException) as error:  # OSError: a truncated file
        raise ValueError(f"{folder}: cannot read these Arrow files ({error!r}); run prepare-data again") from None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
