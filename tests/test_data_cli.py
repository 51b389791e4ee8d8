"""`llm-srec prepare-data`: sources through the command line, printed statistics and report, user errors."""

from __future__ import annotations

import json
from pathlib import Path

from llm_srec.cli import main
from llm_srec.data import RecommendationData

FIXTURES = Path(__file__).resolve().parent / "data_fixtures"


def test_synthetic_prepare_prints_statistics_and_saves(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["prepare-data", "--source", "synthetic", "--output-dir", str(out), "--num-users", "50",
                 "--num-items", "40", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    data = RecommendationData.load_from_disk(out)
    stats = data.statistics()
    assert stats["num_users"] == 50 and stats["num_items"] <= 40
    assert f"interactions       {stats['num_interactions']:,}" in printed
    assert "drop report" in printed
    assert json.loads((out / "statistics.json").read_text()) == stats
    assert data.info["preprocessing"]["seed"] == 3

    assert main(["prepare-data", "--source", "synthetic", "--output-dir", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["prepare-data", "--source", "synthetic", "--output-dir", str(out), "--overwrite"]) == 0


def test_tabular_with_filters_and_report(tmp_path, capsys):
    out = tmp_path / "tab"
    code = main(["prepare-data", "--source", "tabular", "--path", str(FIXTURES / "interactions_kcore.csv"),
                 "--output-dir", str(out), "--user-column", "user", "--item-column", "item", "--time-column",
                 "time", "--filter", "kcore", "--min-user-interactions", "3", "--min-item-interactions", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "kcore / user_removed: 1 users [dropped]" in printed
    assert "users              2" in printed
    assert RecommendationData.load_from_disk(out).info["preprocessing"]["filter"] == "kcore"


def test_bad_input_is_a_one_line_error_with_the_line(tmp_path, capsys):
    code = main(["prepare-data", "--source", "sasrec", "--path", str(FIXTURES / "sasrec_wrong_field_count.txt"),
                 "--output-dir", str(tmp_path / "x")])
    assert code == 2
    assert "line 3: expected 2 fields, found 3" in capsys.readouterr().err
    code = main(["prepare-data", "--source", "sasrec", "--path", str(FIXTURES / "sasrec_wrong_field_count.txt"),
                 "--output-dir", str(tmp_path / "x"), "--on-bad-rows", "skip"])
    assert code == 0
    assert "malformed_row_wrong_field_count: 1 lines [dropped]" in capsys.readouterr().out


def test_missing_source_options_are_user_errors(tmp_path, capsys):
    assert main(["prepare-data", "--source", "movielens", "--output-dir", str(tmp_path / "a")]) == 2
    assert "needs --path" in capsys.readouterr().err
    assert main(["prepare-data", "--source", "amazon2023", "--output-dir", str(tmp_path / "b")]) == 2
    assert "needs --category" in capsys.readouterr().err
    assert main(["prepare-data", "--source", "tabular", "--path", str(FIXTURES / "interactions_kcore.csv"),
                 "--output-dir", str(tmp_path / "c")]) == 2
    assert "needs --user-column and --item-column" in capsys.readouterr().err


def test_amazon_local_folder_uses_paper_defaults(tmp_path, capsys):
    out = tmp_path / "amazon"
    assert main(["prepare-data", "--source", "amazon2023", "--category", "Toys", "--path",
                 str(FIXTURES / "amazon_bad_meta"), "--output-dir", str(out), "--on-bad-rows", "skip",
                 "--filter", "none"]) == 0
    info = RecommendationData.load_from_disk(out).info["preprocessing"]
    assert (info["dedup"], info["filter"], info["sample_rate"]) == ("none", "none", 1.0)
    assert "malformed_row_invalid_json: 1 lines [dropped]" in capsys.readouterr().out
