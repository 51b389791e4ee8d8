"""A saved folder loads as Hub remote code (`trust_remote_code=True`) in a process where `llm_srec` cannot be
imported, and gives the same scores as the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

CHILD = r"""
import json
import sys


class BlockLLMSRec:
    # A meta-path finder that makes every `llm_srec` import fail, as on a machine without the package.
    def find_spec(self, name, path=None, target=None):
        if name == "llm_srec" or name.startswith("llm_srec."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, BlockLLMSRec())
try:
    import llm_srec  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("llm_srec is importable in the child process")

import torch
from transformers import AutoModel, AutoProcessor
from transformers import logging

logging.set_verbosity_error()
model_folder, sasrec_folder, output_file = sys.argv[1:4]
model = AutoModel.from_pretrained(model_folder, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(model_folder, trust_remote_code=True)
model.processor = processor  # AutoModel + AutoProcessor, both remote code, attach to each other
sasrec = AutoModel.from_pretrained(sasrec_folder, trust_remote_code=True).eval()
with torch.no_grad():
    users = model.encode_users(**processor([[1, 2, 3], [10, 11]]))
    items = model.refresh_item_index()
    teacher = sasrec.score(torch.tensor([[1, 2, 3]]))[:, 1:]
recommendation = model.recommend([["I00", "I01"]], k=4)[0]
result = {
    "classes": [type(obj).__module__ + "." + type(obj).__name__ for obj in (model, processor, model.processor, sasrec)],
    "users": users.tolist(),
    "items": items.tolist(),
    "teacher": teacher.tolist(),
    "recommendation": [recommendation.item_ids, recommendation.scores],
    "llm_srec_modules": sorted(name for name in sys.modules if name.split(".")[0] == "llm_srec"),
}
with open(output_file, "w") as handle:
    json.dump(result, handle)
"""


def test_remote_code_load_without_llm_srec_matches_the_library(tiny_model, tiny_sasrec, tmp_path):
    model_folder, sasrec_folder, workdir = tmp_path / "model", tmp_path / "sasrec", tmp_path / "work"
    workdir.mkdir()
    with torch.no_grad():
        for parameter in tiny_model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    tiny_model.save_pretrained(model_folder)
    tiny_sasrec.save_pretrained(sasrec_folder)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
    )
    output_file = tmp_path / "child.json"
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_folder), str(sasrec_folder), str(output_file)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Do you wish to run the custom code" not in completed.stdout + completed.stderr
    child = json.loads(output_file.read_text())

    assert child["llm_srec_modules"] == []
    model_class, processor_class, attached_processor_class, sasrec_class = child["classes"]
    assert model_class.startswith("transformers_modules.") and model_class.endswith(".LLMSRecForRecommendation")
    assert processor_class.startswith("transformers_modules.") and processor_class.endswith(".LLMSRecProcessor")
    assert attached_processor_class.endswith(".LLMSRecProcessor")
    assert sasrec_class.startswith("transformers_modules.") and sasrec_class.endswith(".SASRecModel")

    with torch.no_grad():
        users = tiny_model.encode_users(**tiny_model.processor([[1, 2, 3], [10, 11]]))
        items = tiny_model.refresh_item_index()
        teacher = tiny_sasrec.score(torch.tensor([[1, 2, 3]]))[:, 1:]
    torch.testing.assert_close(torch.tensor(child["users"]), users, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor(child["items"]), items, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor(child["teacher"]), teacher, atol=1e-6, rtol=1e-6)
    recommendation = tiny_model.recommend([["I00", "I01"]], k=4)[0]
    assert child["recommendation"][0] == recommendation.item_ids
    torch.testing.assert_close(torch.tensor(child["recommendation"][1]), torch.tensor(recommendation.scores))
