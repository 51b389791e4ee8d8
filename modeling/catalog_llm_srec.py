"""The item catalog: internal item id <-> external id <-> title, stored as JSON next to a checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence

from .saving_llm_srec import read_json

ITEM_CATALOG_NAME = "item_catalog.json"
MISSING_TITLE = "No Title"


class ItemCatalog:
    """Maps internal item ids ``1..N`` to external ids (strings) and titles; ``0`` is padding and has no entry.

    Internal id ``i`` is ``external_ids[i - 1]`` / ``titles[i - 1]``. A missing title (None or empty) is stored as
    ``"No Title"``, the official code's fallback, so every item renders in a prompt.
    """

    def __init__(self, external_ids: Sequence[str], titles: Sequence[str | None]) -> None:
        external_ids = list(external_ids)
        titles = list(titles)
        if len(external_ids) != len(titles):
            raise ValueError(
                f"ItemCatalog needs one title per item: got {len(external_ids)} external ids and {len(titles)} titles."
            )
        if not external_ids:
            raise ValueError("ItemCatalog needs at least one item.")
        not_strings = [value for value in external_ids if not isinstance(value, str)]
        if not_strings:
            raise ValueError(f"External item ids must be strings, got {not_strings[:5]!r}.")
        index: dict[str, int] = {}
        duplicates: list[str] = []
        for internal_id, external_id in enumerate(external_ids, start=1):
            if external_id in index:
                duplicates.append(external_id)
            index[external_id] = internal_id
        if duplicates:
            raise ValueError(f"Duplicate external item ids in the catalog: {sorted(set(duplicates))[:10]}.")
        bad_titles = [title for title in titles if title is not None and not isinstance(title, str)]
        if bad_titles:
            raise ValueError(f"Item titles must be strings or None, got {bad_titles[:5]!r}.")
        self._external_ids = external_ids
        self._titles = [title if title else MISSING_TITLE for title in titles]
        self._index = index

    def __len__(self) -> int:
        return len(self._external_ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemCatalog):
            return NotImplemented
        return self._external_ids == other._external_ids and self._titles == other._titles

    def __repr__(self) -> str:
        return f"ItemCatalog(num_items={len(self)})"

    def fingerprint(self) -> str:
        """A short hash of the external ids in internal-id order: equal for catalogs that number items alike."""
        return hashlib.sha256("\n".join(self._external_ids).encode("utf-8")).hexdigest()[:16]

    @property
    def external_ids(self) -> list[str]:
        """External ids in internal-id order (a copy)."""
        return list(self._external_ids)

    @property
    def titles(self) -> list[str]:
        """Titles in internal-id order (a copy)."""
        return list(self._titles)

    def to_internal(self, external_ids: Iterable[str]) -> list[int]:
        """Internal ids of the given external ids; unknown ids raise a ValueError naming them."""
        external_ids = list(external_ids)
        unknown = [value for value in external_ids if value not in self._index]
        if unknown:
            raise ValueError(f"Unknown external item ids: {unknown[:10]}" + (" ..." if len(unknown) > 10 else ""))
        return [self._index[value] for value in external_ids]

    def check_internal(self, internal_ids: Iterable[int]) -> list[int]:
        """Return the ids as a list, raising a ValueError naming any id outside ``1..N``."""
        internal_ids = [int(value) for value in internal_ids]
        unknown = [value for value in internal_ids if not 1 <= value <= len(self)]
        if unknown:
            raise ValueError(f"Unknown internal item ids {unknown[:10]}: valid ids are 1..{len(self)}.")
        return internal_ids

    def to_external(self, internal_ids: Iterable[int]) -> list[str]:
        """External ids of internal ids ``1..N``."""
        return [self._external_ids[value - 1] for value in self.check_internal(internal_ids)]

    def title(self, internal_id: int) -> str:
        """Title of one internal id."""
        return self._titles[self.check_internal([internal_id])[0] - 1]

    def to_dict(self) -> dict[str, list[str]]:
        """The JSON content of ``item_catalog.json``."""
        return {"external_ids": list(self._external_ids), "titles": list(self._titles)}

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``item_catalog.json`` into ``directory`` and return its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, ITEM_CATALOG_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ItemCatalog:
        """Read a catalog from a directory holding ``item_catalog.json`` or from the JSON file itself."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, ITEM_CATALOG_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No item catalog at {path}.")
        data = read_json(path)
        if "external_ids" not in data or "titles" not in data:
            raise ValueError(f"{path} is not an item catalog: expected keys 'external_ids' and 'titles'.")
        try:
            return cls(data["external_ids"], data["titles"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


__all__ = ["ItemCatalog", "ITEM_CATALOG_NAME"]
