"""Publishing: the upload path end to end against a local fake Hub, asserting the exact files and bytes received.

The `hub` fixture runs a test under both upload paths of huggingface_hub: the default one (the xet pipeline when
`hf_xet` is installed; every file answered "regular") and the legacy commit path with the LFS basic transfer for
safetensors. The tests on a real tiny model (conftest.py) pick one path each, to stay fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, make_model_folder
from huggingface_hub import ModelCard, constants

from llm_srec import LLMSRecForRecommendation, SASRecModel
from llm_srec.cli import main
from llm_srec.hub import (
    CARD_FILE,
    README_FILE,
    push_model_folder,
    push_sasrec_teacher,
    write_model_card,
)

TOKEN = "hf_test_token"
LLM_SREC_FILES = [
    "README.md", "card.json", "config.json", "data_statistics.json", "metrics.json", "model.safetensors",
    "modeling_llm_srec.py",
]


@pytest.fixture(params=["default", "legacy-lfs"])
def hub(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    legacy = request.param == "legacy-lfs"
    # CI runs with HF_HUB_OFFLINE=1; the fake Hub is on localhost, and ENDPOINT points there so that a call
    # without an explicit endpoint (huggingface_hub's daily agent-registry fetch) cannot leave the machine either.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", legacy or constants.HF_HUB_DISABLE_XET)
    with FakeHub(lfs_patterns=("*.safetensors",) if legacy else ()) as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.endpoint)
        yield fake
        assert fake.unhandled == []
        hub_api = [r for r in fake.requests if r.path.startswith(("/api/repos/", "/api/models/", "/api/validate-yaml"))]
        assert all(r.authorization == f"Bearer {TOKEN}" for r in hub_api)


def _folder_bytes(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def test_push_uploads_exactly_the_model_folder(hub: FakeHub, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")

    commit = push_model_folder(folder, "test-user/tiny-llm-srec", token=TOKEN, endpoint=hub.endpoint)

    repo = hub.repos["test-user/tiny-llm-srec"]
    assert repo.visibility is None
    assert sorted(repo.revisions["main"]) == LLM_SREC_FILES  # no trainer state, no checkpoint-5/
    assert repo.revisions["main"] == _folder_bytes(folder, LLM_SREC_FILES)
    assert json.loads(repo.revisions["main"][CARD_FILE]) == {"repo_id": "test-user/tiny-llm-srec"}
    card = ModelCard(repo.revisions["main"][README_FILE].decode())
    assert 'from_pretrained("test-user/tiny-llm-srec")' in card.text
    assert card.data.to_dict()["model-index"][0]["name"] == "tiny-llm-srec"
    [received] = hub.commits
    assert (received.revision, received.summary) == ("main", "Upload LLM-SRec model")
    assert received.lfs_paths == (["model.safetensors"] if hub.lfs_patterns else [])
    assert commit.oid == received.oid and commit.pr_url is None


@pytest.mark.parametrize(
    "options, revision, visibility",
    [
        ({"private": True}, "main", "private"),
        ({"revision": "dev", "commit_message": "Nightly"}, "dev", None),
        ({"create_pr": True}, "refs/pr/1", None),
    ],
    ids=["private", "revision", "create-pr"],
)
def test_push_options_reach_the_hub(
    hub: FakeHub, tmp_path: Path, options: dict, revision: str, visibility: str | None
) -> None:
    folder = make_model_folder(tmp_path / "model")

    commit = push_model_folder(folder, "tiny-llm-srec", token=TOKEN, endpoint=hub.endpoint, **options)

    repo = hub.repos["test-user/tiny-llm-srec"]  # a bare name lands in the token owner's namespace
    assert repo.visibility == visibility
    assert repo.revisions[revision] == _folder_bytes(folder, LLM_SREC_FILES)
    if revision != "main":
        assert repo.revisions["main"] == {}
    [received] = hub.commits
    assert received.revision == revision
    assert received.summary == options.get("commit_message", "Upload LLM-SRec model")
    if options.get("create_pr"):
        assert commit.pr_url == f"{hub.endpoint}/test-user/tiny-llm-srec/discussions/1"
    else:
        assert commit.pr_url is None


def test_create_pr_with_a_revision_is_refused_before_any_request(hub: FakeHub, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    with pytest.raises(ValueError, match="pull request against the default branch"):
        push_model_folder(folder, "test-user/x", revision="dev", create_pr=True, token=TOKEN, endpoint=hub.endpoint)
    assert hub.requests == []


def test_sasrec_teacher_folder_is_pushed_with_its_own_card(hub: FakeHub, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "teacher", kind="sasrec")

    push_sasrec_teacher(folder, "test-user/tiny-sasrec", parent_repo_id="test-user/tiny-llm-srec", token=TOKEN,
                        endpoint=hub.endpoint)

    files = hub.repos["test-user/tiny-sasrec"].revisions["main"]
    names = ["README.md", "card.json", "config.json", "data_statistics.json", "metrics.json", "model.safetensors",
             "modeling_sasrec.py"]
    assert files == _folder_bytes(folder, names)
    card = ModelCard(files[README_FILE].decode())
    assert "sasrec" in card.data.tags
    assert "teacher of [`test-user/tiny-llm-srec`]" in card.text
    assert hub.commits[0].summary == "Upload SASRec teacher"


def test_cli_pushes_teacher_then_model_and_links_them(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model_folder(tmp_path / "model")
    teacher = make_model_folder(tmp_path / "teacher", kind="sasrec")

    code = main([
        "push", "--model", str(model), "--repo-id", "test-user/m", "--include-teacher", "test-user/m-sasrec",
        "--teacher-folder", str(teacher), "--private", "--token", TOKEN, "--endpoint", hub.endpoint,
    ])

    assert code == 0
    assert [commit.repo_id for commit in hub.commits] == ["test-user/m-sasrec", "test-user/m"]
    assert {repo.visibility for repo in hub.repos.values()} == {"private"}
    model_card = ModelCard(hub.repos["test-user/m"].revisions["main"][README_FILE].decode())
    teacher_card = ModelCard(hub.repos["test-user/m-sasrec"].revisions["main"][README_FILE].decode())
    assert "[`test-user/m-sasrec`](https://huggingface.co/test-user/m-sasrec)" in model_card.text
    assert "[`test-user/m`](https://huggingface.co/test-user/m)" in teacher_card.text
    assert capsys.readouterr().out.splitlines() == [
        f"teacher: {hub.endpoint}/test-user/m-sasrec/commit/{hub.commits[0].oid}",
        f"{hub.endpoint}/test-user/m/commit/{hub.commits[1].oid}",
    ]


def test_cli_reports_hub_refusals_and_bad_flags(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model_folder(tmp_path / "model")
    push = ["push", "--model", str(model), "--token", TOKEN, "--endpoint", hub.endpoint]

    assert main([*push, "--repo-id", "test-user/m", "--revision", "refs/pr/7"]) == 2
    assert "the Hub refused the push" in capsys.readouterr().err
    assert main([*push, "--repo-id", "test-user/m", "--teacher-folder", str(tmp_path)]) == 2
    assert "--teacher-folder needs --include-teacher" in capsys.readouterr().err
    assert main([*push, "--repo-id", "test-user/m", "--revision", "dev", "--create-pr"]) == 2
    assert "do not combine it with a revision" in capsys.readouterr().err


# ---------------------------------------------------------------- a real (tiny) LLM-SRec model (conftest.py)


def _tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _materialise(files: dict[str, bytes], folder: Path) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("hub", ["legacy-lfs"], indirect=True)
def test_pushed_repos_load_as_remote_code_and_score_like_the_library(
    hub: FakeHub, tiny_model: LLMSRecForRecommendation, tmp_path: Path
) -> None:
    from test_remote_code import CHILD  # the remote-code check of test_remote_code.py, run on what the Hub got

    checkpoint = tmp_path / "checkpoint"
    tiny_model.save_pretrained(checkpoint)
    push_sasrec_teacher(checkpoint, "test-user/tiny-real-sasrec", parent_repo_id="test-user/tiny-real", token=TOKEN,
                        endpoint=hub.endpoint)
    tiny_model.push_to_hub("test-user/tiny-real", token=TOKEN, endpoint=hub.endpoint)  # our card, not transformers'

    write_model_card(checkpoint, repo_id="test-user/tiny-real")  # what push_model_to_hub staged and rendered
    received = hub.repos["test-user/tiny-real"].revisions["main"]
    assert received == _tree(checkpoint)
    assert {"model.safetensors", "modeling_llm_srec.py", "processor_config.json", "item_catalog.json"} < set(received)
    assert "auto_map" in json.loads(received["config.json"])
    teacher_files = hub.repos["test-user/tiny-real-sasrec"].revisions["main"]
    assert sorted(teacher_files) == ["README.md", "card.json", "config.json", "configuration_sasrec.py",
                                     "model.safetensors", "modeling_sasrec.py"]

    model_folder = _materialise(received, tmp_path / "pulled-model")
    teacher_folder = _materialise(teacher_files, tmp_path / "pulled-teacher")
    workdir, output = tmp_path / "work", tmp_path / "child.json"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_folder), str(teacher_folder), str(output)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    child = json.loads(output.read_text())
    assert child["llm_srec_modules"] == []
    assert all(name.startswith("transformers_modules.") for name in child["classes"])

    with torch.no_grad():
        users = tiny_model.encode_users(**tiny_model.processor([[1, 2, 3], [10, 11]]))
        items = tiny_model.refresh_item_index()
        teacher = tiny_model.sasrec.score(torch.tensor([[1, 2, 3]]))[:, 1:]
    torch.testing.assert_close(torch.tensor(child["users"]), users, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor(child["items"]), items, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor(child["teacher"]), teacher, atol=1e-6, rtol=1e-6)
    recommendation = tiny_model.recommend([["I00", "I01"]], k=4)[0]
    assert child["recommendation"][0] == recommendation.item_ids
    torch.testing.assert_close(torch.tensor(child["recommendation"][1]), torch.tensor(recommendation.scores))


@pytest.mark.parametrize("source", ["checkpoint", "module"])
@pytest.mark.parametrize("hub", ["default"], indirect=True)
def test_teacher_pushed_from_a_checkpoint_or_a_module_is_the_model_teacher(
    hub: FakeHub, tiny_model: LLMSRecForRecommendation, tmp_path: Path, source: str
) -> None:
    checkpoint = tmp_path / "checkpoint"
    tiny_model.save_pretrained(checkpoint)

    push_sasrec_teacher(checkpoint if source == "checkpoint" else tiny_model.sasrec, "test-user/tiny-real-sasrec",
                        parent_repo_id="test-user/tiny-real", token=TOKEN, endpoint=hub.endpoint)

    received = hub.repos["test-user/tiny-real-sasrec"].revisions["main"]
    assert sorted(received) == ["README.md", "card.json", "config.json", "configuration_sasrec.py",
                                "model.safetensors", "modeling_sasrec.py"]
    assert "teacher of [`test-user/tiny-real`]" in received[README_FILE].decode()
    teacher = SASRecModel.from_pretrained(_materialise(received, tmp_path / "pulled")).eval()
    history = torch.tensor([[0, 0, 3, 7, 1], [0, 0, 0, 0, 5]])
    with torch.no_grad():
        torch.testing.assert_close(teacher.score(history), tiny_model.sasrec.score(history))


def test_teacher_push_refuses_a_model_that_is_not_sasrec(tiny_model: LLMSRecForRecommendation) -> None:
    with pytest.raises(ValueError, match="needs a SASRecModel"):
        push_sasrec_teacher(tiny_model, "test-user/x", endpoint="http://127.0.0.1:9")
