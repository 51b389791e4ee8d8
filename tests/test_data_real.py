"""The shared datasets load to their documented sizes (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llm_srec.data import build_recommendation_data, load_movielens, load_recbole, load_sasrec_text

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent"),
]


def sizes(data) -> tuple[int, int, int]:
    s = data.statistics()
    return s["num_users"], s["num_items"], s["num_interactions"]


def test_amazon_scientific_unisrec():
    raw = load_recbole(SHARED / "amazon-scientific-unisrec", title_end_markers=[". Industrial & Scientific", ". . "])
    data = build_recommendation_data(raw)
    assert sizes(data) == (8442, 4385, 59427)
    assert data.drop_report.count("missing_title") == 0
    assert data.drop_report.count("title_end_marker_not_found") == 0
    titles = dict(zip(data.catalog.external_ids, data.catalog.titles))
    assert titles["B0000223SI"] == "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll"
    assert titles["B00024JE5Q"] == ("TPI Corporation CE24-DS Direct Drive Exhaust Fan, Shutter Mounted, Single "
                                   "Phase, 24 Diameter, 120 Volt")
    stats = data.statistics()
    assert (stats["min_sequence_length"], stats["median_sequence_length"]) == (5, 6.0)
    # the UniSRec test row of user 0 (reviewer ABW8NXS7SV55K) is items 0..12 -> 13, i.e. its ASINs in order
    first = data.splits["test"][0]
    assert first["user_id"] == "ABW8NXS7SV55K"
    index_to_asin = dict(line.split("\t")[::-1] for line in
                         (SHARED / "amazon-scientific-unisrec" / "Scientific.item2index").read_text().split("\n")
                         if line)
    ids = data.catalog.external_ids
    assert [ids[i - 1] for i in first["history"] + [first["target"]]] == [index_to_asin[str(i)] for i in range(14)]


def test_ml_100k():
    data = build_recommendation_data(load_movielens(SHARED / "ml-100k"))
    assert sizes(data) == (943, 1682, 100000)
    assert data.has_timestamps and data.drop_report.count("missing_title") == 0
    assert data.statistics()["min_sequence_length"] == 20
    assert "Toy Story (1995)" in data.catalog.titles
    for row in data.splits["test"].select(range(50)):
        times = row["history_timestamps"] + [row["target_timestamp"]]
        assert times == sorted(times)


def test_ml_1m_sasrec_sequences_with_item_5_core():
    raw = load_sasrec_text(SHARED / "ml-1m" / "ml-1m_seq.txt.gz", titles_path=SHARED / "ml-1m" / "movies.dat")
    data = build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=5, min_item_interactions=5)
    assert sizes(data) == (6040, 3416, 999611)
    assert data.statistics()["min_sequence_length"] == 18
    assert data.drop_report.count("item_below_min_interactions") == 1000209 - 999611
    assert data.drop_report.count("user_removed") == 0
    assert data.drop_report.count("missing_title") == 0
    assert data.item_counts("test")[1:].min() >= 5


def test_ml_1m_partial_ratings_in_grouplens_format():
    folder = SHARED / "ml-1m" / "partial_ratings_users1-2999"
    data = build_recommendation_data(load_movielens(folder, titles_path=SHARED / "ml-1m" / "movies.dat"))
    assert sizes(data)[0] == 2999 and sizes(data)[2] == 487650
    assert data.has_timestamps


def test_sasrec_video_ids_only():
    data = build_recommendation_data(load_sasrec_text(SHARED / "sasrec-video" / "Video.txt"), item_order="sorted")
    assert sizes(data) == (31013, 23715, 287107)
    assert data.drop_report.count("no_test_row", "users") == 30  # 30 users have a single interaction
    assert len(data.splits["test"]) == 31013 - 30
    assert data.drop_report.count("missing_title", "items") == 23715  # no titles: every placeholder counted
    assert data.catalog.external_ids[:3] == ["1", "2", "3"]  # "sorted" keeps the file's ids
    first = data.splits["test"][0]
    head = (SHARED / "sasrec-video" / "Video.txt").read_text().split("\n")[:3]
    assert [int(line.split()[1]) for line in head] == first["history"][:3]


def test_same_inputs_give_identical_splits():
    a = build_recommendation_data(load_movielens(SHARED / "ml-100k"))
    b = build_recommendation_data(load_movielens(SHARED / "ml-100k"))
    for name in ("train", "validation", "test"):
        assert a.splits[name]._fingerprint == b.splits[name]._fingerprint
        assert a.splits[name].data.table.equals(b.splits[name].data.table)
    assert np.array_equal(a.item_counts(), b.item_counts())
