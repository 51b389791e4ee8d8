"""Processing semantics on hand-made interactions: ordering, dedup, filters, split, titles, save/load, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_srec.data import (
    NO_TIMESTAMP,
    RawInteractions,
    RecommendationData,
    SyntheticConfig,
    build_recommendation_data,
    generate_synthetic,
    load_tabular,
)
from llm_srec.data.titles import clean_title, cut_at_markers

FIXTURES = Path(__file__).resolve().parent / "data_fixtures"


def raw_from(
    rows: list[tuple], titles: dict[str, str] | None = None, split: list[str] | None = None
) -> RawInteractions:
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).astype({"timestamp": np.int64})
    if split is not None:
        frame["split"] = split
    return RawInteractions(frame, None if titles is None else pd.Series(titles, dtype=object), name="hand")


def rows_of(data: RecommendationData, split: str) -> list[tuple]:
    d = data.splits[split].to_dict()
    return list(zip(d["user_id"], d["history"], d["target"], d["history_timestamps"], d["target_timestamp"]))


def test_unsorted_duplicates_ties_and_titles_hand_computed():
    raw = load_tabular(FIXTURES / "interactions_unsorted.csv", user_column="user", item_column="item",
                       time_column="time", title_column="title")
    data = build_recommendation_data(raw)
    # u1 sorted by time, the exact duplicate (u1, i2, 200) dropped; u2's tie at 500 keeps file order (i4, i3)
    assert data.catalog.external_ids == ["i1", "i2", "i3", "i4"]
    assert data.catalog.titles == ["Alpha & Omega", "Beta, the second", "Gamma Ray", "No Title"]
    t = 1_600_000_000  # the fixture's times are t + 100 ... t + 600 (unix seconds in 2020)
    assert rows_of(data, "test") == [("u1", [1, 2], 3, [t + 100, t + 200], t + 300),
                                     ("u2", [1, 4, 3], 2, [t + 400, t + 500, t + 500], t + 600)]
    assert rows_of(data, "validation") == [("u1", [1], 2, [t + 100], t + 200),
                                           ("u2", [1, 4], 3, [t + 400, t + 500], t + 500)]
    assert rows_of(data, "train") == [("u2", [1], 4, [t + 400], t + 500)]
    assert data.splits["train"]["user_index"] == [1]
    report = data.drop_report
    assert report.count("reordered_by_timestamp") == 4
    assert report.count("timestamp_tie") == 2
    assert report.count("duplicate_exact") == 1
    assert report.count("no_train_row", "users") == 1
    assert report.count("title_cleaned") == 2
    assert report.count("missing_title") == 1
    assert data.statistics()["num_interactions"] == 7


@pytest.mark.parametrize("policy, expected", [
    ("none", [1, 2, 1, 1, 3]), ("exact", [1, 2, 1, 3]), ("first", [1, 2, 3]), ("last", [2, 1, 3]),
])
def test_dedup_policies(policy, expected):
    # time order: a@1, b@2, a@3, a@3 (an exact duplicate), c@4
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "c", 4), ("u", "a", 3)]
    data = build_recommendation_data(raw_from(rows), dedup=policy)
    test = data.splits["test"][0]
    ids = data.catalog.external_ids
    letters = [ids[i - 1] for i in test["history"] + [test["target"]]]
    reference = {"a": 1, "b": 2, "c": 3}
    assert [reference[x] for x in letters] == expected
    dropped = {"none": 0, "exact": 1, "first": 2, "last": 2}[policy]
    assert data.drop_report.total_dropped() == dropped


def test_untimed_order_is_file_order_and_exact_dedup_keeps_repeats():
    rows = [("u1", "a", NO_TIMESTAMP), ("u2", "x", NO_TIMESTAMP), ("u1", "b", NO_TIMESTAMP),
            ("u1", "a", NO_TIMESTAMP), ("u2", "y", NO_TIMESTAMP)]
    data = build_recommendation_data(raw_from(rows))
    assert rows_of(data, "test") == [("u1", [1, 2], 1, [], -1), ("u2", [3], 4, [], -1)]
    assert data.drop_report.count("repeated_user_item_kept") == 1
    assert not data.has_timestamps


def test_mixed_known_and_unknown_timestamps_is_an_error():
    with pytest.raises(ValueError, match="lack a timestamp"):
        build_recommendation_data(raw_from([("u", "a", 5), ("u", "b", NO_TIMESTAMP)]))


def test_kcore_iterates_until_stable_and_counts():
    raw = load_tabular(FIXTURES / "interactions_kcore.csv", user_column="user", item_column="item", time_column="time")
    data = build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=3, min_item_interactions=3)
    assert data.splits["test"]["user_id"] == ["u1", "u2"]
    assert data.statistics()["num_interactions"] == 10
    report = data.drop_report
    assert report.count("item_below_min_interactions") == 2  # z and y
    assert report.count("user_below_min_interactions") == 1  # u3's remaining "a"
    assert report.count("user_removed", "users") == 1
    assert report.count("item_removed", "items") == 2


def test_kcore_and_paper_filter_differ_where_the_paper_is_single_pass():
    # item "c" has 3 interactions, but one is by user v whose only other item is rare: iterated k-core (k=3)
    # removes v, then c drops to 2 and goes too; the single pass keeps c.
    rows = [(u, i, t) for t, (u, i) in enumerate([
        ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u1", "a"),
        ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u2", "b"),
        ("v", "c"), ("v", "r"), ("v", "a"),
    ])]
    kcore = build_recommendation_data(raw_from(rows), filter_mode="kcore", min_user_interactions=3,
                                      min_item_interactions=3)
    paper = build_recommendation_data(raw_from(rows), filter_mode="paper", min_user_interactions=3,
                                      min_item_interactions=3)
    # single pass: r (1 interaction) goes; v keeps c, a -> 2 < 3 left, so v goes; c keeps its count-based pass
    assert paper.catalog.external_ids == ["a", "b", "c"]
    assert paper.splits["test"]["user_id"] == ["u1", "u2"]
    # iterated: after v is removed, a has 4, b 3, c 2 -> c removed, users shrink to 3 items each
    assert kcore.catalog.external_ids == ["a", "b"]
    assert kcore.statistics()["num_interactions"] == 6


def test_paper_filter_counts_only_train_rows_for_users_and_reports_lost_heldout_items():
    # user w has 5 interactions but its test item is rare: kept (5 train rows), its held-out item removed
    rows, split = [], []
    for user in ("w", "x", "y", "z", "q"):
        for t, item in enumerate("abcde"):
            rows.append((user, item, t))
            split.append("train")
    rows += [("w", "rare", 10)]
    split += ["test"]
    rows += [("s", "a", 1), ("s", "b", 2), ("s", "rare2", 3), ("s", "c", 4), ("s", "d", 5)]
    split += ["train"] * 5  # s has 5 rows but only 4 train rows survive the item filter -> removed
    data = build_recommendation_data(raw_from(rows, split=split), filter_mode="paper")
    assert data.splits["test"]["user_id"] == ["w", "x", "y", "z", "q"]
    assert data.drop_report.count("heldout_item_removed", "users") == 1
    assert data.drop_report.count("user_removed", "users") == 1
    assert data.num_items == 5


def test_user_sampling_matches_random_sample_and_is_seeded():
    rows = [(f"u{k:02d}", f"i{(k + j) % 7}", j) for k in range(40) for j in range(4)]
    data = build_recommendation_data(raw_from(rows), sample_rate=0.25, seed=3)
    users = [f"u{k:02d}" for k in range(40)]
    expected = set(random.Random(3).sample(users, 10))
    assert set(data.splits["test"]["user_id"]) == expected
    assert data.splits["test"]["user_id"] == sorted(expected)  # kept in first-appearance order
    assert data.drop_report.count("user_not_sampled", "users") == 30
    again = build_recommendation_data(raw_from(rows), sample_rate=0.25, seed=3)
    assert again.splits["test"]["user_id"] == data.splits["test"]["user_id"]
    with pytest.raises(ValueError, match="sampling rate"):
        build_recommendation_data(raw_from(rows), sample_rate=0.0)


def test_every_user_filtered_away_is_an_error_with_the_report():
    with pytest.raises(ValueError, match="every user was removed"):
        build_recommendation_data(raw_from([("u", "a", 1), ("u", "b", 2)]), filter_mode="kcore")


def test_split_rows_only_with_non_empty_history_and_single_interaction_users_kept():
    rows = [("one", "a", 1), ("two", "a", 1), ("two", "b", 2), ("three", "a", 1), ("three", "b", 2),
            ("three", "c", 3), ("four", "a", 1), ("four", "b", 2), ("four", "c", 3), ("four", "d", 4)]
    data = build_recommendation_data(raw_from(rows))
    assert data.num_users == 4 and data.user_sequences["user_id"] == ["one", "two", "three", "four"]
    assert data.user_sequences["items"][0] == [1] and data.user_sequences["timestamps"][0] == [1]
    assert data.splits["test"]["user_id"] == ["two", "three", "four"]
    assert data.splits["test"]["user_index"] == [1, 2, 3]
    assert data.splits["validation"]["user_id"] == ["three", "four"]
    assert data.splits["train"]["user_id"] == ["four"]
    assert data.drop_report.count("no_test_row", "users") == 1
    assert data.drop_report.count("no_train_row", "users") == 3
    assert data.statistics()["num_interactions"] == 10
    assert [s.tolist() for s in data.sequences("train")] == [[], [], [1], [1, 2]]


def test_item_order_sorted_keeps_numeric_ids():
    rows = [("u", "10", -1), ("u", "2", -1), ("u", "1", -1)]
    data = build_recommendation_data(raw_from(rows), item_order="sorted")
    assert data.catalog.external_ids == ["1", "2", "10"]
    assert data.splits["test"][0]["history"] == [3, 2]


def test_split_schema_and_contract_columns():
    data = build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=20, num_items=30)))
    for split in data.splits.values():
        schema = split.data.schema
        assert [f.name for f in schema] == ["user_id", "user_index", "history", "history_timestamps", "target",
                                           "target_timestamp"]
        assert str(schema.field("history").type) == "list<item: int32>"
        assert str(schema.field("history_timestamps").type) == "list<item: int64>"
        assert str(schema.field("target").type) == "int32"
        assert str(schema.field("user_index").type) == "int64"
    test, valid, train = (data.splits[s].to_dict() for s in ("test", "validation", "train"))
    for t_hist, t_target, v_hist, v_target in zip(test["history"], test["target"], valid["history"], valid["target"]):
        assert v_hist + [v_target] == t_hist
    for tr_hist, tr_target, v_hist in zip(train["history"], train["target"], valid["history"]):
        assert tr_hist + [tr_target] == v_hist
    items = np.concatenate([np.asarray(h) for h in test["history"]] + [np.asarray(test["target"])])
    assert items.min() == 1 and items.max() == data.num_items


def test_sequences_item_counts_and_statistics():
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4), ("u2", "b", 1), ("u2", "a", 2),
            ("u2", "c", 3)]
    data = build_recommendation_data(raw_from(rows))
    assert [s.tolist() for s in data.sequences("test")] == [[1, 2, 3, 4], [2, 1, 3]]
    assert [s.tolist() for s in data.sequences("validation")] == [[1, 2, 3], [2, 1]]
    assert [s.tolist() for s in data.sequences("train")] == [[1, 2], [2]]
    assert data.item_counts("train").tolist() == [0, 1, 2, 0, 0]
    assert data.item_counts("test").tolist() == [0, 2, 2, 2, 1]
    stats = data.statistics()
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (2, 4, 7)
    assert stats["avg_sequence_length"] == 3.5
    assert (stats["num_train_rows"], stats["num_validation_rows"], stats["num_test_rows"]) == (1, 2, 2)


def test_title_cleaning_and_markers():
    assert clean_title("  Caf&eacute;\t &amp;\n  Bar\u00a0 ") == "Café & Bar"
    assert clean_title(None) == ""
    assert cut_at_markers("Saw Blade. Industrial & Scientific Tools. Brand. ", [". Industrial & Scientific", ". . "]) \
        == ("Saw Blade", True)
    assert cut_at_markers("Fan, 24 in. . TPI. ", [". Industrial & Scientific", ". . "]) == ("Fan, 24 in", True)
    assert cut_at_markers("plain", [". . "]) == ("plain", False)


def test_missing_title_placeholder_with_item_id():
    data = build_recommendation_data(raw_from([("u", "a", 1), ("u", "b", 2)], titles={"a": "Apple"}),
                                     missing_title="Item {item_id}")
    assert data.catalog.titles == ["Apple", "Item b"]
    assert data.drop_report.count("missing_title") == 1


def test_save_load_roundtrip_and_byte_identical_outputs(tmp_path):
    config = SyntheticConfig(num_users=60, num_items=50, seed=7)
    first = build_recommendation_data(generate_synthetic(config))
    second = build_recommendation_data(generate_synthetic(config))
    first.save_to_disk(tmp_path / "a")
    second.save_to_disk(tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and any(p.suffix == ".arrow" for p in files_a)
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    assert not any(p.suffix in (".pkl", ".pickle", ".pt", ".bin") for p in files_a)
    assert first.splits["train"]._fingerprint == second.splits["train"]._fingerprint

    loaded = RecommendationData.load_from_disk(tmp_path / "a")
    assert loaded.user_sequences.to_dict() == first.user_sequences.to_dict()
    assert loaded.catalog == first.catalog
    assert loaded.drop_report == first.drop_report
    assert loaded.statistics() == first.statistics()
    assert loaded.info == first.info
    for name in ("train", "validation", "test"):
        assert loaded.splits[name].to_dict() == first.splits[name].to_dict()

    other = build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=60, num_items=50, seed=8)))
    assert other.splits["train"]._fingerprint != first.splits["train"]._fingerprint


def test_load_from_disk_rejects_non_prepared_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        RecommendationData.load_from_disk(tmp_path)
