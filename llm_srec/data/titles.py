"""Item-title cleaning and the explicit placeholder for items without a usable title.

Why: titles go verbatim into LLM prompts, so HTML entities (`&amp;`), stray whitespace and missing metadata must be
normalised the same way for every source, and every placeholder must be counted.
"""

from __future__ import annotations

import html
import re
from typing import Sequence

import pandas as pd

from llm_srec.modeling.catalog_llm_srec import MISSING_TITLE

from .placeholders import check_missing_title
from .report import DropReport

DEFAULT_MISSING_TITLE = MISSING_TITLE  # the official code's fallback, shared with ItemCatalog
_WHITESPACE = re.compile(r"\s+")


def clean_title(title: object) -> str:
    """HTML-unescape, collapse runs of whitespace (tabs, newlines, NBSP) to one space, strip; non-str -> ""."""
    if not isinstance(title, str):
        return ""
    return _WHITESPACE.sub(" ", html.unescape(title)).strip()


def cut_at_markers(text: str, markers: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest of `markers` (e.g. UniSRec's ". Industrial & Scientific"); (text, False) if none."""
    cuts = [index for index in (text.find(marker) for marker in markers) if index >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def resolve_titles(
    item_ids: Sequence[str],
    titles: pd.Series | None,
    report: DropReport,
    missing_title: str = DEFAULT_MISSING_TITLE,
    name: str = "data",
) -> list[str]:
    """Cleaned title for each of `item_ids` (the catalog order); missing/empty ones become the placeholder.

    `missing_title` may contain `{item_id}` (e.g. "Item {item_id}") to keep placeholders distinguishable. Titles
    that match none of the items (e.g. keyed by another id column) are an error naming the dataset `name`.
    """
    check_missing_title(missing_title)
    stage = "titles"
    if titles is None:
        report.add(stage, "missing_title", len(item_ids), "items", "changed",
                   f"the source has no titles; placeholder {missing_title!r}")
        return [missing_title.format(item_id=item) for item in item_ids]
    duplicated = titles.index.duplicated(keep="first")
    report.add(stage, "duplicate_metadata_entry", int(duplicated.sum()), "items", "dropped",
               "later metadata rows for an already described item are ignored")
    titles = titles[~duplicated]
    wanted = pd.Index(item_ids, dtype=object)
    no_entry = int((~wanted.isin(titles.index)).sum())
    if no_entry and no_entry == len(wanted):
        raise ValueError(
            f"{name}: none of the {len(wanted)} items has an entry in the titles ({len(titles)} entries, ids like "
            f"{titles.index[:3].tolist()}; the interactions' items are like {wanted[:3].tolist()}): check the item "
            "id column of the title file instead of getting a placeholder title for every item"
        )
    raw_titles = titles.reindex(wanted).to_list()
    cleaned = [clean_title(title) for title in raw_titles]
    changed = sum(1 for raw, clean in zip(raw_titles, cleaned) if isinstance(raw, str) and clean and raw != clean)
    empty = sum(1 for clean in cleaned if not clean) - no_entry
    report.add(stage, "title_cleaned", changed, "items", "changed", "HTML entities / whitespace normalised")
    report.add(stage, "missing_title", no_entry, "items", "changed",
               f"item has no metadata entry; placeholder {missing_title!r}")
    report.add(stage, "missing_title", empty, "items", "changed",
               f"metadata title is empty; placeholder {missing_title!r}")
    unused = int((~titles.index.isin(pd.Index(item_ids, dtype=object))).sum())
    report.add(stage, "metadata_without_interactions", unused, "items", "note",
               "metadata entries for items absent from the final interactions")
    return [clean or missing_title.format(item_id=item) for item, clean in zip(item_ids, cleaned)]
