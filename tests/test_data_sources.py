"""Every source on small files written here in the real formats (no network, no shared data needed)."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_srec.data import (
    PAPER_SAMPLING_RATES,
    build_recommendation_data,
    load_amazon2023,
    load_movielens,
    load_recbole,
    load_sasrec_text,
    load_tabular,
    paper_settings,
)
from llm_srec.data import amazon2023
from llm_srec.data.amazon2023_sample import amazon2023_sample_rows, write_amazon2023_sample

CATEGORY = "Industrial_and_Scientific"


def amazon_rows(num_users: int = 30, num_items: int = 12, seed: int = 0) -> dict[str, list[tuple]]:
    return amazon2023_sample_rows(num_users, num_items, seed)


def write_amazon(folder: Path, rows: dict[str, list[tuple]], flat: bool = False, gz: bool = False) -> None:
    write_amazon2023_sample(folder, rows, CATEGORY, flat=flat, gz=gz)


def reference_paper_filter(rows: dict[str, list[tuple]], k: int = 5) -> tuple[set[str], int]:
    """The official single-pass filter written out plainly: kept users and the number of kept interactions."""
    everything = [(split, r) for split, split_rows in rows.items() for r in split_rows]
    count_user = Counter(r[0] for _, r in everything)
    count_item = Counter(r[1] for _, r in everything)
    train_left = Counter(r[0] for split, r in everything if split == "train" and count_item[r[1]] >= k)
    users = {u for u in count_user if count_user[u] >= k and train_left[u] >= k}
    kept = sum(1 for _, r in everything if r[0] in users and count_item[r[1]] >= k)
    return users, kept


def test_amazon2023_from_hub_calls_hf_hub_download_with_repository_paths(tmp_path, monkeypatch):
    rows = amazon_rows()
    write_amazon(tmp_path / "hub", rows)
    calls = []

    def fake_download(repo_id, repo_type, filename, revision=None, cache_dir=None):
        calls.append((repo_id, repo_type, filename, revision))
        return str(tmp_path / "hub" / filename)

    monkeypatch.setattr(amazon2023, "hf_hub_download", fake_download)
    raw = load_amazon2023(CATEGORY, revision="abc123")
    assert sorted(c[2] for c in calls) == sorted([
        f"benchmark/5core/last_out/{CATEGORY}.train.csv", f"benchmark/5core/last_out/{CATEGORY}.valid.csv",
        f"benchmark/5core/last_out/{CATEGORY}.test.csv", f"raw/meta_categories/meta_{CATEGORY}.jsonl",
    ])
    assert {c[:2] for c in calls} == {("McAuley-Lab/Amazon-Reviews-2023", "dataset")}
    assert {c[3] for c in calls} == {"abc123"}
    total = sum(len(v) for v in rows.values())
    assert len(raw.frame) == total
    assert raw.frame["timestamp"].iloc[0] == rows["train"][0][3] // 1000  # ms -> s
    assert Counter(raw.frame["split"]) == {s: len(v) for s, v in rows.items()}

    data = build_recommendation_data(raw, **paper_settings(CATEGORY))
    users, kept = reference_paper_filter(rows)
    assert set(data.splits["test"]["user_id"]) == users
    assert data.statistics()["num_interactions"] == kept
    assert data.has_timestamps
    titles = dict(zip(data.catalog.external_ids, data.catalog.titles))
    first_item = sorted({r[1] for v in rows.values() for r in v})[0]
    other = next(i for i in titles if i != first_item)
    assert titles[other] == f"ACME Widget & Gadget {other[-4:]} (synthetic)"
    if first_item in titles:
        assert titles[first_item] == "No Title"
    assert data.drop_report.count("metadata_without_interactions") >= 1  # B0UNUSED0001


@pytest.mark.parametrize("flat, gz", [(False, False), (True, True)])
def test_amazon2023_local_folder_layouts(tmp_path, monkeypatch, flat, gz):
    def no_network(**_):
        raise AssertionError("a local folder must not touch the Hub")

    monkeypatch.setattr(amazon2023, "hf_hub_download", no_network)
    rows = amazon_rows(num_users=12, seed=1)
    write_amazon(tmp_path, rows, flat=flat, gz=gz)
    raw = load_amazon2023(CATEGORY, path=tmp_path)
    data = build_recommendation_data(raw, filter_mode="none", dedup="none")
    assert data.num_users == 12
    # chronological order = train rows, then valid, then test (timestamps increase)
    row = data.splits["test"][0]
    sequence = [r for split in ("train", "valid", "test") for r in rows[split] if r[0] == row["user_id"]]
    ids = data.catalog.external_ids
    assert [ids[i - 1] for i in row["history"] + [row["target"]]] == [r[1] for r in sequence]
    assert row["history_timestamps"] + [row["target_timestamp"]] == [r[3] // 1000 for r in sequence]


def test_amazon2023_paper_settings_and_missing_files(tmp_path):
    assert PAPER_SAMPLING_RATES == {"Movies_and_TV": 0.05, "Industrial_and_Scientific": 1.0,
                                    "Electronics": 0.05, "CDs_and_Vinyl": 0.33}
    assert paper_settings("CDs_and_Vinyl", seed=4) == {
        "sample_rate": 0.33, "seed": 4, "dedup": "none", "filter_mode": "paper", "min_user_interactions": 5,
        "min_item_interactions": 5}
    with pytest.raises(ValueError, match="not one of the paper"):
        paper_settings("Books")
    with pytest.raises(FileNotFoundError, match=f"meta_{CATEGORY}.jsonl not found"):
        load_amazon2023(CATEGORY, path=tmp_path)


def test_amazon2023_user_sampling_is_seeded(tmp_path):
    rows = amazon_rows(num_users=40, seed=2)
    write_amazon(tmp_path, rows)
    raw = load_amazon2023(CATEGORY, path=tmp_path)
    a = build_recommendation_data(raw, sample_rate=0.33, seed=0, dedup="none")
    b = build_recommendation_data(raw, sample_rate=0.33, seed=0, dedup="none")
    c = build_recommendation_data(raw, sample_rate=0.33, seed=1, dedup="none")
    assert a.num_users == int(40 * 0.33) == 13
    assert a.splits["test"]["user_id"] == b.splits["test"]["user_id"] != c.splits["test"]["user_id"]
    users_in_order = list(dict.fromkeys(r[0] for r in rows["train"]))
    assert set(a.splits["test"]["user_id"]) == set(random.Random(0).sample(users_in_order, 13))


def test_recbole_single_inter_file_with_item_titles(tmp_path):
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "7\t100\t5\t978300760.0\n7\t101\t3\t978300700.0\n7\t102\t4\t978300800.5\n8\t100\t4\t5.0\n8\t102\t4\t6.0\n")
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\n100\tHeat\t1995\n101\tAlien\t1979\n")
    data = build_recommendation_data(load_recbole(tmp_path))
    assert data.catalog.external_ids == ["101", "100", "102"]
    assert data.catalog.titles == ["Alien", "Heat", "No Title"]
    assert data.splits["test"][0]["history_timestamps"] == [978300700, 978300760]
    assert data.splits["test"][0]["target_timestamp"] == 978300800
    assert data.drop_report.count("reordered_by_timestamp") == 2


def test_recbole_presplit_with_capped_histories(tmp_path):
    # sequence 0..6 with histories capped at 3 items; train rows listed longest first, as UniSRec writes them
    sequence = [str(i) for i in range(7)]
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    windows = [(sequence[max(0, k - 3):k], sequence[k]) for k in range(1, 7)]
    train = "".join(f"u\t{' '.join(h)}\t{t}\n" for h, t in reversed(windows[:-2]))
    (tmp_path / "cap.train.inter").write_text(header + train)
    (tmp_path / "cap.valid.inter").write_text(header + f"u\t{' '.join(windows[-2][0])}\t{windows[-2][1]}\n")
    (tmp_path / "cap.test.inter").write_text(header + f"u\t{' '.join(windows[-1][0])}\t{windows[-1][1]}\n")
    data = build_recommendation_data(load_recbole(tmp_path))
    row = data.splits["test"][0]
    ids = data.catalog.external_ids
    assert [ids[i - 1] for i in row["history"] + [row["target"]]] == sequence


def test_movielens_1m_and_100k_formats(tmp_path):
    ml1m = tmp_path / "ml-1m"
    ml1m.mkdir()
    (ml1m / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n"
                                      "2::1193::5::978298413\n2::661::4::978299000\n")
    (ml1m / "movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                      "661::James and the Giant Peach (1996)::Animation\n"
                                      "914::My Fair Lady (1964)::Musical\n"
                                      "99::Cité des enfants perdus, La (1995)::Sci-Fi\n".encode("latin-1"))
    data = build_recommendation_data(load_movielens(ml1m))
    assert data.splits["test"][0]["history"] == [1, 2]  # 1193 @760, 914 @1968, then 661 @2109
    assert data.catalog.external_ids == ["1193", "914", "661"]
    assert data.catalog.titles[0] == "One Flew Over the Cuckoo's Nest (1975)"
    titles = load_movielens(ml1m).titles
    assert titles["99"] == "Cité des enfants perdus, La (1995)"

    ml100k = tmp_path / "ml-100k"
    ml100k.mkdir()
    (ml100k / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t4\t881250950\n"
                                   "186\t242\t1\t891717000\n")
    genres = "|".join(["0"] * 19)
    (ml100k / "u.item").write_bytes(f"242|Kolya (1996)|24-Jan-1997||http://x|{genres}\n"
                                    f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{genres}\n".encode("latin-1"))
    data = build_recommendation_data(load_movielens(ml100k))
    assert data.splits["test"]["user_id"] == ["196", "186"]
    assert data.splits["test"]["history"] == [[1], [1]]
    assert data.catalog.titles == ["Kolya (1996)", "L.A. Confidential (1997)"]
    with pytest.raises(FileNotFoundError, match="neither ratings.dat"):
        load_movielens(tmp_path)


def test_sasrec_text_gz_with_title_files(tmp_path):
    with gzip.open(tmp_path / "seq.txt.gz", "wt") as handle:
        handle.write("1 10\n1 11\n1 12\n2 11\n2 10\n")
    (tmp_path / "titles.tsv").write_text("10\tTen\n11\tEleven\n")
    data = build_recommendation_data(load_sasrec_text(tmp_path / "seq.txt.gz", titles_path=tmp_path / "titles.tsv"))
    assert data.splits["test"]["history"] == [[1, 2], [2]]
    assert data.catalog.titles == ["Ten", "Eleven", "No Title"]
    assert not data.has_timestamps and data.splits["test"][0]["history_timestamps"] == []
    assert data.splits["test"][0]["target_timestamp"] == -1
    assert load_sasrec_text(tmp_path).name == "seq"  # a folder holding one sequence file


def test_tabular_csv_jsonl_parquet_agree(tmp_path):
    records = [
        {"uid": "a", "iid": 1, "ts": "2021-03-04T10:00:00Z", "name": "One"},
        {"uid": "a", "iid": 2, "ts": "2021-03-05T10:00:00Z", "name": "Two"},
        {"uid": "b", "iid": 2, "ts": "2021-03-01T00:00:00Z", "name": "Two"},
        {"uid": "a", "iid": 3, "ts": "2021-03-03T10:00:00Z", "name": None},
        {"uid": "b", "iid": 1, "ts": "2021-03-02T00:00:00Z", "name": "One (other title)"},
    ]
    (tmp_path / "log.csv").write_text("uid,iid,ts,name\n" + "".join(
        f"{r['uid']},{r['iid']},{r['ts']},{r['name'] or ''}\n" for r in records))
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.table({k: [r[k] for r in records] for k in records[0]}), tmp_path / "log.parquet")
    results = []
    for name in ("log.csv", "log.jsonl", "log.parquet"):
        raw = load_tabular(tmp_path / name, user_column="uid", item_column="iid", time_column="ts",
                           title_column="name", time_unit="iso")
        data = build_recommendation_data(raw)
        results.append((data.splits["test"].to_dict(), data.catalog.titles, data.catalog.external_ids))
        assert data.drop_report.count("conflicting_titles") == 1
    assert results[0] == results[1] == results[2]
    test, titles, ids = results[0]
    assert ids == ["3", "1", "2"] and titles == ["No Title", "One", "Two"]
    assert test["history"] == [[1, 2], [3]]
    assert test["history_timestamps"][0] == [1614765600, 1614852000]


def test_tabular_numeric_time_units_and_separate_title_file(tmp_path):
    (tmp_path / "log.tsv").write_text("u\ti\tt\nx\tp\t1600000000000\nx\tq\t1600000001000\n")
    (tmp_path / "items.csv").write_text("item,title\np,Pen\nq,Quill\n")
    raw = load_tabular(tmp_path / "log.tsv", user_column="u", item_column="i", time_column="t", time_unit="ms",
                       titles_path=tmp_path / "items.csv", titles_item_column="item", title_column="title")
    data = build_recommendation_data(raw)
    assert data.splits["test"][0]["history_timestamps"] == [1600000000]
    assert data.catalog.titles == ["Pen", "Quill"]
    (tmp_path / "items.xlsx").write_bytes(b"PK")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_tabular(tmp_path / "items.xlsx", user_column="u", item_column="i")
