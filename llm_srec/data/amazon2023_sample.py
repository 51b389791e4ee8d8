"""A small synthetic data set in the Amazon Reviews 2023 file format (benchmark ``last_out`` CSVs + metadata JSONL).

Why: the paper's data path (`load_amazon2023`) must run offline too, in the notebook and the tests, without
shipping any of the real (research-licensed) data. Users, items, ratings and titles are generated; only the file
layout and field names are Amazon's. Every title is labelled "synthetic".
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

SAMPLE_CATEGORY = "Industrial_and_Scientific"
UNUSED_ITEM = "B0UNUSED0001"


def amazon2023_sample_rows(num_users: int = 300, num_items: int = 120, seed: int = 0) -> dict[str, list[tuple]]:
    """Benchmark-style ``last_out`` rows ``(user_id, parent_asin, rating, timestamp_ms)``: per user, the last
    interaction goes to ``test``, the second to last to ``valid``, the rest to ``train``."""
    rng = random.Random(seed)
    splits: dict[str, list[tuple]] = {"train": [], "valid": [], "test": []}
    for user in range(num_users):
        length = rng.randint(4, 9)
        start = 1_600_000_000_000 + user * 1_000_000
        events = [(f"AUSER{user:03d}", f"B0ITEM{rng.randrange(num_items):04d}", 5.0, start + 86_400_000 * k)
                  for k in range(length)]
        splits["train"] += events[:-2]
        splits["valid"].append(events[-2])
        splits["test"].append(events[-1])
    return splits


def _meta_record(asin: str, title: str | None) -> dict:
    """A metadata line with the real file's fields (the loader reads ``parent_asin`` and ``title``)."""
    return {
        "main_category": "Industrial & Scientific", "title": title, "average_rating": 4.5, "rating_number": 12,
        "features": ["Durable", "Light"], "description": ["A useful thing."], "price": "12.99",
        "images": [{"thumb": "https://x/1.jpg", "large": "https://x/1L.jpg", "variant": "MAIN", "hi_res": None}],
        "videos": [], "store": "ACME", "categories": ["Industrial & Scientific", "Tools"],
        "details": {"Brand": "ACME", "Item Weight": "1 pound"}, "parent_asin": asin, "bought_together": None,
    }


def write_amazon2023_sample(
    folder: str | Path,
    rows: dict[str, list[tuple]] | None = None,
    category: str = SAMPLE_CATEGORY,
    flat: bool = False,
    gz: bool = False,
) -> Path:
    """Write ``rows`` (default: `amazon2023_sample_rows()`) as the Hub repository's files under ``folder``
    (``benchmark/5core/last_out/<category>.<split>.csv`` and ``raw/meta_categories/meta_<category>.jsonl``, or all
    in ``folder`` with ``flat``; gzipped with ``gz``) and return ``folder``. Like the real files, one item's
    metadata has no title, titles carry an HTML entity, and one metadata line belongs to an item nobody bought."""
    folder = Path(folder)
    rows = rows if rows is not None else amazon2023_sample_rows()
    items = sorted({row[1] for split in rows.values() for row in split})
    titles: dict[str, str | None] = {asin: f"ACME Widget &amp; Gadget  {asin[-4:]} (synthetic)" for asin in items}
    titles[items[0]] = None
    titles[UNUSED_ITEM] = "Never bought (synthetic)"
    files = [
        *((f"benchmark/5core/last_out/{category}.{split}.csv",
           "user_id,parent_asin,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in split_rows))
          for split, split_rows in rows.items()),
        (f"raw/meta_categories/meta_{category}.jsonl",
         "".join(json.dumps(_meta_record(asin, titles[asin])) + "\n" for asin in [*items, UNUSED_ITEM])),
    ]
    for relative, text in files:
        path = folder / (relative.rsplit("/", 1)[-1] if flat else relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if gz:
            with gzip.open(f"{path}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            path.write_text(text, encoding="utf-8")
    return folder


__all__ = ["SAMPLE_CATEGORY", "amazon2023_sample_rows", "write_amazon2023_sample"]
