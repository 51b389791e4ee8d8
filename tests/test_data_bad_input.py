"""The bad-input corpus (tests/data_fixtures/): every case is a clear error naming file/line/column, or a counted
skip in the drop report. See tests/data_fixtures/README.md for what each file contains."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_srec.data import (
    RecommendationData,
    build_recommendation_data,
    load_amazon2023,
    load_movielens,
    load_recbole,
    load_sasrec_text,
    load_tabular,
)

FIXTURES = Path(__file__).resolve().parent / "data_fixtures"


def tabular(name: str, **kwargs):
    return load_tabular(FIXTURES / name, user_column="user", item_column="item", time_column="time", **kwargs)


def test_wrong_field_count_errors_with_line_or_is_counted():
    with pytest.raises(ValueError, match=r"sasrec_wrong_field_count\.txt: line 3: expected 2 fields, found 3"):
        load_sasrec_text(FIXTURES / "sasrec_wrong_field_count.txt")
    raw = load_sasrec_text(FIXTURES / "sasrec_wrong_field_count.txt", on_bad_rows="skip")
    assert len(raw.frame) == 5
    assert raw.report.count("malformed_row_wrong_field_count", "lines") == 1


def test_too_few_fields_errors_with_line_and_column_or_is_counted():
    with pytest.raises(ValueError, match=r"sasrec_too_few_fields\.txt: line 3, column 'item': empty field"):
        load_sasrec_text(FIXTURES / "sasrec_too_few_fields.txt")
    raw = load_sasrec_text(FIXTURES / "sasrec_too_few_fields.txt", on_bad_rows="skip")
    assert raw.frame["item"].tolist() == ["1", "2", "1", "2"]
    assert raw.report.count("malformed_row", "lines") == 1


def test_blank_lines_are_counted():
    raw = load_sasrec_text(FIXTURES / "sasrec_blank_lines.txt")
    assert len(raw.frame) == 6
    assert raw.report.count("blank_line", "lines") == 2


def test_empty_file_is_an_error():
    with pytest.raises(ValueError, match="no interactions"):
        build_recommendation_data(load_sasrec_text(FIXTURES / "empty.txt"))


def test_missing_column_names_file_and_column():
    with pytest.raises(ValueError, match=r"interactions_missing_time_column\.csv: missing required column\(s\) "
                                         r"\['time'\]; the header has \['user', 'item'\]"):
        tabular("interactions_missing_time_column.csv")


def test_unparsable_timestamp_errors_with_line_and_column_or_is_counted():
    with pytest.raises(ValueError,
                       match=r"interactions_bad_time\.csv: line 4, column 'time': not a number .*'yesterday'"):
        tabular("interactions_bad_time.csv")
    raw = tabular("interactions_bad_time.csv", on_bad_rows="skip")
    assert raw.frame["item"].tolist() == ["i1", "i2", "i4"]
    assert raw.report.count("malformed_row", "lines") == 1
    with pytest.raises(ValueError, match=r"u\.data: line 2, column 'timestamp': not an integer: '2001-01-01'"):
        load_movielens(FIXTURES / "movielens_bad_timestamp")


def test_non_utf8_bytes_error_with_line_and_byte_or_are_replaced_and_counted():
    with pytest.raises(ValueError,
                       match=r"interactions_latin1\.csv: line 3, byte column 14: byte 0xE9 is not valid utf-8"):
        tabular("interactions_latin1.csv", title_column="title")
    raw = tabular("interactions_latin1.csv", title_column="title", encoding_errors="replace")
    assert raw.titles["i2"] == "Caf\ufffd Noir"
    assert raw.report.count("undecodable_bytes_replaced", "lines") == 1
    raw = tabular("interactions_latin1.csv", title_column="title", encoding="latin-1")
    assert raw.titles["i2"] == "Café Noir"


def test_items_without_metadata_get_counted_placeholders_or_are_dropped_or_error():
    kept = build_recommendation_data(tabular("interactions_unknown_items.csv", title_column="title",
                                             titles_path=FIXTURES / "titles_for_unknown_items.csv"))
    assert dict(zip(kept.catalog.external_ids, kept.catalog.titles))["i9"] == "No Title"
    assert kept.drop_report.count("missing_title", "items") == 1
    dropped = tabular("interactions_unknown_items.csv", title_column="title", unknown_items="drop",
                      titles_path=FIXTURES / "titles_for_unknown_items.csv")
    assert "i9" not in dropped.frame["item"].tolist()
    assert dropped.report.count("unknown_item", "lines") == 1
    with pytest.raises(ValueError, match=r"interactions_unknown_items\.csv: line 4, column 'item': item has no "
                                         r"metadata entry: 'i9'"):
        tabular("interactions_unknown_items.csv", title_column="title", unknown_items="error",
                titles_path=FIXTURES / "titles_for_unknown_items.csv")
    movielens = build_recommendation_data(load_movielens(FIXTURES / "movielens_unknown_item"))
    assert movielens.drop_report.count("missing_title", "items") == 1
    assert "Café (1996)" in movielens.catalog.titles  # u.item is Latin-1
    with pytest.raises(ValueError, match=r"u\.data: line 3, column 'item': item has no metadata entry: '99'"):
        load_movielens(FIXTURES / "movielens_unknown_item", unknown_items="error")


def test_interactions_naming_unknown_item_indices():
    with pytest.raises(ValueError, match=r"Toy\.test\.inter: line 3, column 'item_id': index not in the item map: '7'"):
        load_recbole(FIXTURES / "recbole_unknown_index")
    raw = load_recbole(FIXTURES / "recbole_unknown_index", on_bad_rows="skip", title_end_markers=[". Fruit", ". . "])
    assert raw.report.count("unknown_item_index", "lines") == 1
    data = build_recommendation_data(raw)
    assert data.catalog.titles == ["Apple", "Banana", "Cherry", "Date"]
    assert data.splits["test"]["history"] == [[1, 2, 3], [3, 4]]  # user 1 keeps C D -> A from train/valid


def test_pre_split_rows_that_do_not_chain_name_the_row():
    with pytest.raises(ValueError, match=r"user '0': pre-split rows do not chain .* first Toy\.valid\.inter:2"):
        load_recbole(FIXTURES / "recbole_broken_chain")


def test_unsorted_and_duplicate_timestamps_are_counted():
    data = build_recommendation_data(tabular("interactions_unsorted.csv", title_column="title"))
    report = data.drop_report
    assert report.count("reordered_by_timestamp") == 4
    assert report.count("timestamp_tie") == 2
    assert report.count("duplicate_exact") == 1


def test_users_left_empty_by_filtering_are_counted():
    data = build_recommendation_data(tabular("interactions_kcore.csv"), filter_mode="kcore",
                                     min_user_interactions=3, min_item_interactions=3)
    assert data.drop_report.count("user_removed", "users") == 1
    assert "u3" not in data.splits["test"]["user_id"]


def test_amazon_metadata_invalid_json_and_null_title():
    with pytest.raises(ValueError, match=r"meta_Toys\.jsonl: line 3: invalid JSON"):
        load_amazon2023("Toys", path=FIXTURES / "amazon_bad_meta")
    raw = load_amazon2023("Toys", path=FIXTURES / "amazon_bad_meta", on_bad_rows="skip")
    assert raw.report.count("malformed_row_invalid_json", "lines") == 1
    data = build_recommendation_data(raw)
    titles = dict(zip(data.catalog.external_ids, data.catalog.titles))
    assert titles == {"P1": "Robot", "P2": "No Title", "P4": "Yo-yo", "P3": "No Title"}
    assert data.drop_report.count("missing_title", "items") == 2  # P2 null title, P3 lost with its line


def test_nothing_disappears_silently_interaction_accounting():
    """Every interaction read is either in the splits or counted as dropped."""
    raw = tabular("interactions_unsorted.csv", title_column="title")
    data = build_recommendation_data(raw, filter_mode="kcore", min_user_interactions=4, min_item_interactions=1)
    kept = data.statistics()["num_interactions"]
    assert kept + data.drop_report.total_dropped("interactions") == len(raw.frame)


def test_a_dataset_without_split_rows_is_refused_naming_what_survived():
    with pytest.raises(ValueError, match=r"interactions_one_per_user: no split rows: 3 users and 2 items are left.*"
                                         r"nothing was dropped"):
        build_recommendation_data(tabular("interactions_one_per_user.csv"))
    with pytest.raises(ValueError, match=r"every user was removed: dropped by kcore / user_below_min_interactions"):
        build_recommendation_data(tabular("interactions_kcore.csv"), filter_mode="kcore", min_user_interactions=9)


def test_empty_splits_round_trip_and_broken_folders_are_named(tmp_path):
    data = build_recommendation_data(tabular("interactions_positions.csv"))  # no user is long enough for a train row
    assert len(data.splits["train"]) == 0
    data.save_to_disk(tmp_path / "data")
    assert len(RecommendationData.load_from_disk(tmp_path / "data").splits["train"]) == 0
    with pytest.raises(FileNotFoundError, match=r"no such folder"):
        RecommendationData.load_from_disk(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: not a prepared dataset \(an empty folder\)"):
        RecommendationData.load_from_disk(tmp_path / "empty")
    (tmp_path / "data" / "splits" / "train" / "state.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"splits/train/state\.json is not valid JSON \(line 1 column 2\)"):
        RecommendationData.load_from_disk(tmp_path / "data")


def test_pre_split_recbole_needs_only_the_test_windows(tmp_path):
    raw = load_recbole(FIXTURES / "recbole_valid_test_only")
    assert raw.report.count("presplit_file_absent", "files") == 1
    data = build_recommendation_data(raw)
    assert [data.catalog.to_external(s.tolist()) for s in data.sequences("test")] == [
        ["1", "2", "3", "4", "5"], ["2", "5", "1", "3"]]
    (tmp_path / "Games-6k.test.inter").write_bytes((FIXTURES / "recbole_valid_test_only" / "Games-6k.test.inter")
                                                   .read_bytes())
    assert load_recbole(tmp_path).frame["item"].tolist() == ["1", "2", "3", "4", "5", "2", "5", "1", "3"]
    with pytest.raises(FileNotFoundError, match=r"neither Toy\.inter nor Toy\.test\.inter found \(only "
                                                r"Toy\.train\.inter, Toy\.valid\.inter"):
        load_recbole(FIXTURES / "recbole_train_valid_only")


def test_recbole_title_file_of_another_name_is_used_or_named(tmp_path):
    raw = load_recbole(FIXTURES / "recbole_valid_test_only")  # titles in Games.item, interactions in Games-6k.*
    assert raw.report.count("title_file_of_another_name", "files") == 1
    assert build_recommendation_data(raw).catalog.titles == ["Mario", "Zelda", "Tetris", "Pong", "Doom"]
    for path in (FIXTURES / "recbole_valid_test_only").iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "Other.text").write_text("item_id:token\ttext:token_seq\n1\tX\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"no Games-6k\.item or Games-6k\.text, and several title files of "
                                                r"other names \['Games\.item', 'Other\.text'\]"):
        load_recbole(tmp_path)
    assert load_recbole(tmp_path, titles_path=tmp_path / "Games.item").titles["5"] == "Doom"


def test_titles_matching_no_item_are_an_error_not_placeholders():
    with pytest.raises(ValueError, match=r"interactions_unknown_items: none of the 4 items has an entry in the titles "
                                         r"\(3 entries, ids like \['1', '2', '3'\]"):
        build_recommendation_data(tabular("interactions_unknown_items.csv",
                                          titles_path=FIXTURES / "titles_other_ids.csv"))


def test_positions_in_the_time_column_only_order_the_interactions():
    raw = tabular("interactions_positions.csv")
    assert raw.time_is_order and not raw.has_timestamps
    assert raw.report.count("time_column_is_order") == 5
    data = build_recommendation_data(raw)
    assert not data.has_timestamps
    assert data.catalog.to_external(data.sequences("test")[0].tolist()) == ["i1", "i2", "i3"]  # ordered by position
    assert data.splits["test"]["history_timestamps"] == [[], []]  # no 1970 dates in any prompt


def test_times_after_the_year_5000_name_the_unit():
    with pytest.raises(ValueError, match=r"interactions_huge_time\.csv: line 3, column 'time': after the year 5000: "
                                         r"not a unix time in seconds; pass time_unit \(--time-unit\) ms/us/ns: "
                                         r"'1e20'"):
        tabular("interactions_huge_time.csv")
    raw = tabular("interactions_huge_time.csv", on_bad_rows="skip")
    assert raw.frame["item"].tolist() == ["i1", "i3"] and raw.has_timestamps


def test_every_reader_writes_a_numeric_id_the_same_way(tmp_path):
    """JSON 7 and 7.0 are one item, as in Parquet (a float column) and as the text "7" of a CSV."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    items = [7, 7.0, 8, 8.5, "x"]
    rows = [{"user": "u1", "item": item, "time": 1_600_000_000 + position} for position, item in enumerate(items)]
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    pq.write_table(pa.table({"user": ["u1"] * 4, "item": [7, 7.0, 8, 8.5], "time": [1, 2, 3, 4]}),
                   tmp_path / "floats.parquet")
    (tmp_path / "ids.csv").write_text("user,item,time\nu1,7,1\nu1,8,2\n", encoding="utf-8")
    read = {name: load_tabular(tmp_path / name, user_column="user", item_column="item", time_column="time")
            for name in ("ids.jsonl", "floats.parquet", "ids.csv")}
    assert read["ids.jsonl"].frame["item"].tolist() == ["7", "7", "8", "8.5", "x"]
    assert read["floats.parquet"].frame["item"].tolist() == ["7", "7", "8", "8.5"]
    assert read["ids.csv"].frame["item"].tolist() == ["7", "8"]


def test_a_missing_title_placeholder_other_than_item_id_is_named():
    raw = load_sasrec_text(FIXTURES / "sasrec_blank_lines.txt")
    with pytest.raises(ValueError, match=r"missing title '\{foo\}' is not a valid placeholder"):
        build_recommendation_data(raw, missing_title="{foo}")
