"""A fast start (issue 21): `llm-srec --help`, `llm-srec CMD --help` and argument errors import no torch or
transformers, and `import llm_srec` stays cheap until a model class is touched. Checked in a fresh interpreter,
by the modules it loaded, never by wall time."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "accelerate")
RUN_CLI = """
import sys
from llm_srec.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print([name for name in {heavy!r} if name in sys.modules])
"""


def heavy_modules_after(code: str, *argv: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return eval(result.stdout.strip().splitlines()[-1])  # the printed list of module names


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["train", "--help"],
    ["convert-gguf", "--help"],
    ["demo", "--help"],
    ["train", "--data", "d", "--sasrec", "s", "--backbone", "b", "--output-dir", "o", "--batch-size", "0"],
    ["prepare-data", "--source", "synthetic", "--output-dir", "o", "--missing-title", "{foo}"],
    ["--log-level", "bogus", "card", "--model", "m"],
], ids=" ".join)
def test_help_and_argument_errors_import_no_torch(argv):
    assert heavy_modules_after(RUN_CLI.format(heavy=HEAVY), *argv) == []


def test_import_llm_srec_is_cheap_until_a_model_class_is_touched():
    code = f"""
import sys
import llm_srec
print([name for name in {HEAVY!r} if name in sys.modules])
"""
    assert heavy_modules_after(code) == []
    touched = """
import llm_srec
from transformers import AutoConfig
assert "LLMSRecForRecommendation" in dir(llm_srec)
config_class = llm_srec.SASRecConfig  # touching a class registers the Auto classes
assert isinstance(AutoConfig.for_model("sasrec"), config_class)
print([])
"""
    assert heavy_modules_after(touched) == []
    imported = """
import llm_srec.modeling  # as the command line and the pipeline do: registers too (no trust_remote_code prompt)
from transformers import AutoConfig, AutoProcessor
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
assert type(AutoConfig.for_model("llm_srec")) is llm_srec.modeling.LLMSRecConfig
assert PROCESSOR_MAPPING[llm_srec.modeling.LLMSRecConfig] is llm_srec.modeling.LLMSRecProcessor
print([])
"""
    assert heavy_modules_after(imported) == []
