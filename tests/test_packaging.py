"""The checkout root must never shadow the installed package: every subpackage lives under `llm_srec/` itself, so
`import llm_srec` from the repository root (where `llm_srec/` is found first) sees the same complete package that
`pip install .` installs."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

import llm_srec

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_inside_the_llm_srec_folder():
    packages = set(find_packages(ROOT, include=["llm_srec", "llm_srec.*"]))
    assert {"llm_srec", "llm_srec.modeling", "llm_srec.hub", "llm_srec.hub_cards", "llm_srec.training",
            "llm_srec.evaluation", "llm_srec.data", "llm_srec.cli"} <= packages
    assert not (ROOT / "modeling").exists() and not (ROOT / "hub_cards").exists()
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "package_dir" not in setup and "packages = find:" in setup


def test_model_code_and_card_templates_import_from_the_same_tree():
    import llm_srec.hub_cards
    import llm_srec.modeling

    package = Path(llm_srec.__file__).resolve().parent
    assert Path(llm_srec.modeling.__file__).resolve().parent == package / "modeling"
    assert (Path(llm_srec.hub_cards.__file__).resolve().parent / "llm_srec.md.j2").is_file()
