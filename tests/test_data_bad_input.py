"""The bad-input corpus (tests/data_fixtures/): every case is a clear error naming file/line/column, or a counted
skip in the drop report. See tests/data_fixtures/README.md for what each file contains."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_srec.data import (
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
