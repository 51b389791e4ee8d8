"""The design card's top level: the Hub-uploadable model code (`modeling/`) and the card templates (`hub_cards/`)
sit beside `llm_srec/` and install inside it as `llm_srec.modeling` and `llm_srec.hub_cards` (setup.cfg
`package_dir`). Every way of getting the package must see them: a source checkout (the package appends the
checkout root to its `__path__`), the wheel, `pip install .` run from the checkout root and from elsewhere, and
`pip install -e .`."""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S
from setuptools import find_packages


ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "llm_srec", "modeling", "hub_cards")
# Prints where llm_srec, its model code and its card templates were imported from, and that the model loads.
WHERE = ("import importlib.resources, llm_srec, llm_srec.modeling, llm_srec.hub_cards\n"
         "from llm_srec import LLMSRecForRecommendation\n"
         "print(llm_srec.__file__); print(llm_srec.modeling.__file__)\n"
         "print(importlib.resources.files('llm_srec.hub_cards').joinpath('llm_srec.md.j2').is_file())")


def _setup_options() -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser["options"]


def _listed(value: str) -> dict[str, str]:
    lines = [line.strip() for line in value.strip().splitlines() if line.strip()]
    return dict(line.split(" = ") for line in lines) if " = " in value else dict.fromkeys(lines, "")


def test_the_top_level_matches_the_design_card():
    assert {"llm_srec", "modeling", "hub_cards", "examples", "tests", "setup.cfg"} <= {p.name for p in ROOT.iterdir()}
    assert not (ROOT / "llm_srec" / "modeling").exists() and not (ROOT / "llm_srec" / "hub_cards").exists()
    options = _setup_options()
    assert _listed(options["package_dir"]) == {"llm_srec.modeling": "modeling", "llm_srec.hub_cards": "hub_cards"}
    # every subpackage of the llm_srec folder is installed, as are the two mapped ones
    assert set(_listed(options["packages"])) == {*find_packages(ROOT, include=["llm_srec", "llm_srec.*"]),
                                                 "llm_srec.modeling", "llm_srec.hub_cards"}


def test_a_source_checkout_imports_the_top_level_folders():
    # `python` run in the checkout root imports the checkout's folders, whatever is installed (CI: a wheel install)
    assert _where(sys.executable, ROOT) == [
        str(ROOT / "llm_srec" / "__init__.py"), str(ROOT / "modeling" / "__init__.py"), "True"]


def _where(python: str | Path, cwd: Path, **env: str) -> list[str]:
    completed = subprocess.run([str(python), "-c", WHERE], cwd=cwd, capture_output=True, text=True,
                               timeout=HANG_GUARD_S,
                               env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **env}, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.split()


def _pip(*args: str | Path, python: str | Path = sys.executable) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", *map(str, args)], check=True, capture_output=True, timeout=HANG_GUARD_S)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the package's sources, so that building leaves the working tree as it was."""
    folder = tmp_path_factory.mktemp("checkout")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, folder / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if (ROOT / name).is_dir() else {}))
    return folder


def test_the_wheel_holds_the_model_code_and_card_templates_inside_llm_srec(checkout: Path, tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(tmp_path), str(checkout)], check=True, capture_output=True,
                   timeout=HANG_GUARD_S)
    (wheel,) = tmp_path.glob("llm_srec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"llm_srec/modeling/{path.name}" for path in (ROOT / "modeling").glob("*.py")}
    expected |= {f"llm_srec/hub_cards/{path.name}" for path in (ROOT / "hub_cards").iterdir() if path.is_file()}
    assert expected <= names
    assert not [name for name in names if name.startswith(("modeling/", "hub_cards/"))]
    # the model classes' push_to_hub reaches the card renderer through this entry point (saving_llm_srec.py)
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[llm_srec.push_to_hub]\nmodel_card = llm_srec.hub:push_model_to_hub" in declared


def test_pip_install_imports_from_the_checkout_root_and_from_elsewhere(checkout: Path, tmp_path: Path):
    target = tmp_path / "site"
    _pip("--target", target, checkout)
    installed = target / "llm_srec"
    elsewhere = _where(sys.executable, tmp_path, PYTHONPATH=str(target))
    assert elsewhere == [str(installed / "__init__.py"), str(installed / "modeling" / "__init__.py"), "True"]
    # from the checkout root its own llm_srec/ comes first, and then its top-level modeling/ too
    at_root = _where(sys.executable, checkout, PYTHONPATH=str(target))
    assert at_root == [str(checkout / "llm_srec" / "__init__.py"), str(checkout / "modeling" / "__init__.py"), "True"]


def test_an_editable_install_imports_the_top_level_folders(checkout: Path, tmp_path: Path):
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(environment)],
                   check=True, timeout=HANG_GUARD_S)
    python = environment / "bin" / "python"
    _pip("--editable", checkout, python=python)
    assert _where(python, tmp_path) == [
        str(checkout / "llm_srec" / "__init__.py"), str(checkout / "modeling" / "__init__.py"), "True"]


def test_the_model_code_imports_only_torch_transformers_safetensors_and_its_own_files():
    """modeling/ is uploaded as Hub remote code: it must run where llm_srec is not installed (peft only for LoRA
    and k-bit backbones, imported when they are used)."""
    allowed = {"torch", "transformers", "safetensors", "peft", *sys.stdlib_module_names}
    for path in sorted((ROOT / "modeling").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            outside = [name for name in modules if name.split(".")[0] not in allowed]
            assert not outside, f"{path.name}:{node.lineno} imports {outside}"
