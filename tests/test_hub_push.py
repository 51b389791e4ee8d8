"""Publishing: the upload path end to end against a local fake Hub, asserting the exact files and bytes received,
and every way a push fails (offline, unreachable, not logged in, token refused) ending in one line.

The `hub` fixture runs a test under both ways huggingface_hub sends a file: inline in the commit (every file
answered "regular") and the LFS basic transfer for safetensors (xet disabled). The tests on a real tiny model
(conftest.py) pick one each, to stay fast.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S
import torch
from fake_hub import FakeHub, make_model_folder
from huggingface_hub import ModelCard, constants

from llm_srec import LLMSRecForRecommendation, SASRecModel
from llm_srec.cli import main
from llm_srec.hub import (
    CARD_FILE,
    README_FILE,
    HubAuthError,
    HubUnreachableError,
    PublishError,
    push_model_folder,
    push_sasrec_teacher,
    write_model_card,
)

TOKEN = "hf_test_token"
LLM_SREC_FILES = [
    "README.md", "card.json", "config.json", "data_statistics.json", "metrics.json", "model.safetensors",
    "modeling_llm_srec.py",
]


def _talk_to(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Let huggingface_hub make requests, to `endpoint` only.

    CI runs with HF_HUB_OFFLINE=1; ENDPOINT points to `endpoint` so that a call without an explicit endpoint
    (huggingface_hub's daily agent-registry fetch) cannot leave the machine either.
    """
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)


@pytest.fixture(params=["default", "legacy-lfs"])
def hub(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    legacy = request.param == "legacy-lfs"
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", legacy or constants.HF_HUB_DISABLE_XET)
    with FakeHub(lfs_patterns=("*.safetensors",) if legacy else ()) as fake:
        _talk_to(fake.endpoint, monkeypatch, tmp_path)
        yield fake
        assert fake.unhandled == []
        hub_api = [r for r in fake.requests if r.path.startswith(("/api/repos/", "/api/models/", "/api/validate-yaml"))]
        assert all(r.authorization == f"Bearer {TOKEN}" for r in hub_api)


def _folder_bytes(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def _hub_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith("llm_srec.hub")]


def test_push_uploads_exactly_the_model_folder(hub: FakeHub, tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")

    commit = push_model_folder(folder, "test-user/tiny-llm-srec", token=TOKEN, endpoint=hub.endpoint)

    repo = hub.repos["test-user/tiny-llm-srec"]
    assert repo.visibility is None
    assert sorted(repo.revisions["main"]) == LLM_SREC_FILES  # no trainer state, no checkpoint-5/
    assert repo.revisions["main"] == _folder_bytes(folder, LLM_SREC_FILES)  # a Hub id backbone is kept as is
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
    assert capsys.readouterr().err == (
        f"llm-srec push: error: the Hub at {hub.endpoint} refused the push to test-user/m (HTTP 404): "
        "Revision refs/pr/7 not found\n"
    )
    assert main([*push, "--repo-id", "test-user/m", "--teacher-folder", str(tmp_path)]) == 2
    assert "--teacher-folder needs --include-teacher" in capsys.readouterr().err
    assert main([*push, "--repo-id", "test-user/m", "--revision", "dev", "--create-pr"]) == 2
    assert "do not combine it with a revision" in capsys.readouterr().err


# ---------------------------------------------------------------- what leaves the machine


SECRETS = [".env", "credentials.json", "hf_token.txt", "id_rsa", "server.pem"]


def test_push_uploads_model_files_only_and_never_secrets(
    hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_model_folder(tmp_path / "model")
    (folder / "data").mkdir()
    (folder / "data" / "ratings.csv").write_text("user,item\nu1,i1\n")
    for name in ["raw_ratings.csv", "notes.md", *SECRETS]:
        (folder / name).write_text(f"content of {name}\n")

    push_model_folder(folder, "test-user/m", token=TOKEN, endpoint=hub.endpoint, extra_files=["notes.md"])

    received = hub.repos["test-user/m"].revisions["main"]
    assert sorted(received) == sorted([*LLM_SREC_FILES, "notes.md"])
    left_out, secrets = _hub_warnings(caplog)
    assert left_out == (
        f"{folder}: not uploading checkpoint-5/, data/, optimizer.json, optimizer.safetensors, raw_ratings.csv, "
        "rng_state.json, trainer_state.json, training_args.bin: not model files (name non-secret ones in "
        "extra_files / --include-extra to upload them)"
    )
    assert secrets == f"{folder}: never uploading {', '.join(SECRETS)}: the names look like secrets"


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (".env", ValueError, "extra file '.env' looks like a secret (matches '.env'); secrets are never pushed"),
        ("keys", ValueError, "extra file 'keys/api_token.txt' looks like a secret (matches '*token*')"),
        ("missing.txt", FileNotFoundError, "extra file 'missing.txt' does not exist in"),
        ("../outside.txt", ValueError, "extra file '../outside.txt' is outside"),
    ],
    ids=["secret", "secret-in-folder", "missing", "outside"],
)
@pytest.mark.parametrize("hub", ["default"], indirect=True)
def test_extra_files_are_refused_before_any_request(
    hub: FakeHub, tmp_path: Path, extra: str, error: type[Exception], message: str
) -> None:
    folder = make_model_folder(tmp_path / "model")
    (folder / ".env").write_text("HF_TOKEN=hf_secret\n")
    (folder / "keys").mkdir()
    (folder / "keys" / "api_token.txt").write_text("hf_secret\n")
    (tmp_path / "outside.txt").write_text("not in the model folder\n")
    with pytest.raises(error, match=re.escape(message)):
        push_model_folder(folder, "test-user/m", token=TOKEN, endpoint=hub.endpoint, extra_files=[extra])
    assert hub.requests == []


@pytest.mark.parametrize("hub", ["default"], indirect=True)
def test_cli_include_extra_uploads_named_files_and_refuses_secrets(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_model_folder(tmp_path / "model")
    (folder / "probe").mkdir()
    (folder / "probe" / "report.md").write_text("# Probe report\n")
    (folder / "token.txt").write_text("hf_secret\n")
    push = ["push", "--model", str(folder), "--repo-id", "test-user/m", "--token", TOKEN, "--endpoint", hub.endpoint]

    assert main([*push, "--include-extra", "token.txt"]) == 2
    assert capsys.readouterr().err == (
        "llm-srec push: error: extra file 'token.txt' looks like a secret (matches '*token*'); secrets are never "
        "pushed\n"
    )
    assert hub.requests == []
    assert main([*push, "--include-extra", "probe"]) == 0
    received = hub.repos["test-user/m"].revisions["main"]
    assert sorted(received) == sorted([*LLM_SREC_FILES, "probe/report.md"])


def test_uploaded_config_training_args_and_card_name_no_local_paths(
    hub: FakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_model_folder(tmp_path / "model")
    backbone = tmp_path / "backbones" / "my-llama"
    config = json.loads((folder / "config.json").read_text())
    config["llm_name_or_path"] = str(backbone)
    config["llm_config"]["_name_or_path"] = "meta-llama/Llama-3.2-3B-Instruct"  # a Hub id: kept
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    runs = tmp_path / "runs"
    write_model_card(folder, training_args={
        "output_dir": str(runs / "checkpoints"), "logging_dir": f"{runs}/logs/", "learning_rate": 1e-4,
        "resume_from_checkpoint": str(runs / "checkpoints" / "checkpoint-5"), "run_name": "runs/relative",
    })
    local = _folder_bytes(folder, ["config.json", "training_args.json"])

    push_model_folder(folder, "test-user/m", token=TOKEN, endpoint=hub.endpoint)

    received = hub.repos["test-user/m"].revisions["main"]
    assert [name for name, content in received.items() if str(tmp_path).encode() in content] == []
    assert json.loads(received["config.json"]) == {**config, "llm_name_or_path": "my-llama"}
    assert json.loads(received["training_args.json"]) == {
        "output_dir": None, "logging_dir": None, "learning_rate": 1e-4, "resume_from_checkpoint": "checkpoint-5",
        "run_name": "runs/relative",
    }
    card = ModelCard(received[README_FILE].decode())
    assert "`my-llama`, a local model that is not on the Hub" in card.text
    assert card.data.base_model is None  # the basename is not claimed as a Hub model
    assert _folder_bytes(folder, ["config.json", "training_args.json"]) == local  # the folder keeps its paths
    assert str(backbone) in (folder / README_FILE).read_text()
    [rewrites] = [message for message in _hub_warnings(caplog) if "local paths" in message]
    assert rewrites == (
        f"{folder}: the uploaded copies name no local paths (the local files are unchanged): "
        'config.json llm_name_or_path -> "my-llama"; training_args.json output_dir -> null; '
        'training_args.json logging_dir -> null; training_args.json resume_from_checkpoint -> "checkpoint-5"'
    )


# ---------------------------------------------------------------- failures: one clear message, no traceback


def _closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _push_argv(folder: Path, *options: str) -> list[str]:
    return ["push", "--model", str(folder), "--repo-id", "test-user/m", *options]


def test_offline_push_fails_in_one_line_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_sasrec: SASRecModel
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", _closed_port_endpoint())  # were the check missed: nowhere to go
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = make_model_folder(tmp_path / "model")
    message = (f"cannot reach the Hub at {constants.ENDPOINT}: offline mode is on (HF_HUB_OFFLINE); unset "
               "HF_HUB_OFFLINE to push")

    with pytest.raises(HubUnreachableError, match=f"^{re.escape(message)}$") as raised:
        push_model_folder(folder, "test-user/m", token=TOKEN)
    assert isinstance(raised.value, ConnectionError)
    with pytest.raises(HubUnreachableError, match="offline mode is on"):
        tiny_sasrec.push_to_hub("test-user/m", token=TOKEN)  # the model classes' push reaches llm_srec.hub
    assert main(_push_argv(folder, "--token", TOKEN)) == 2
    assert capsys.readouterr().err == f"llm-srec push: error: {message}\n"
    assert not (folder / README_FILE).exists()  # a failed push leaves the folder as it was


def test_unreachable_hub_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = _closed_port_endpoint()
    _talk_to(endpoint, monkeypatch, tmp_path)
    folder = make_model_folder(tmp_path / "model")
    pattern = (rf"^cannot reach the Hub at {re.escape(endpoint)}: .*Connection refused; "
               "check your network or HF_ENDPOINT$")

    with pytest.raises(HubUnreachableError, match=pattern) as raised:
        push_model_folder(folder, "test-user/m", token=TOKEN)
    assert raised.value.__suppress_context__  # the httpx chain stays out of the traceback
    assert main(_push_argv(folder, "--token", TOKEN, "--endpoint", endpoint)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.fullmatch(pattern, error.removeprefix("llm-srec push: error: ").strip())


@pytest.mark.parametrize("hub", ["default"], indirect=True)
def test_push_without_a_login_fails_in_one_line_before_any_request(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    folder = make_model_folder(tmp_path / "model")
    message = "not logged in: run `hf auth login` or set HF_TOKEN"

    with pytest.raises(HubAuthError, match=f"^{re.escape(message)}$"):
        push_model_folder(folder, "test-user/m", endpoint=hub.endpoint)
    assert main(_push_argv(folder, "--endpoint", hub.endpoint)) == 2
    assert capsys.readouterr().err == f"llm-srec push: error: {message}\n"
    assert hub.requests == []


def test_a_rejected_token_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_model_folder(tmp_path / "model")
    with FakeHub(token=TOKEN) as hub:
        _talk_to(hub.endpoint, monkeypatch, tmp_path)
        message = (f"the Hub at {hub.endpoint} rejected the token (Invalid credentials in Authorization header): "
                   "run `hf auth login` or set HF_TOKEN")
        with pytest.raises(HubAuthError, match=f"^{re.escape(message)}$") as raised:
            push_model_folder(folder, "test-user/m", token="hf_revoked", endpoint=hub.endpoint)
        assert isinstance(raised.value, PublishError)
        assert main(_push_argv(folder, "--token", "hf_revoked", "--endpoint", hub.endpoint)) == 2
        assert capsys.readouterr().err == f"llm-srec push: error: {message}\n"
        assert hub.repos == {} and hub.commits == []


def test_model_code_does_not_import_the_hub_package() -> None:
    """llm_srec.modeling is uploaded as Hub remote code: it reaches llm_srec.hub inside push_to_hub only."""
    code = ("import sys, llm_srec\n"
            "print([name for name in sys.modules if name == 'llm_srec.hub' or name.startswith('llm_srec.hub.')])")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"


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
    backbone = Path(tiny_model.config.llm_name_or_path)  # a local folder: the Hub gets its name only
    tiny_model.save_pretrained(checkpoint)
    push_sasrec_teacher(checkpoint, "test-user/tiny-real-sasrec", parent_repo_id="test-user/tiny-real", token=TOKEN,
                        endpoint=hub.endpoint)
    tiny_model.push_to_hub("test-user/tiny-real", token=TOKEN, endpoint=hub.endpoint)  # our card, not transformers'

    write_model_card(checkpoint, repo_id="test-user/tiny-real")  # what push_model_to_hub staged and rendered
    received, local = hub.repos["test-user/tiny-real"].revisions["main"], _tree(checkpoint)
    path_free = {"config.json", README_FILE}  # rewritten in the uploaded copies
    assert sorted(received) == sorted(local)
    assert {name: received[name] for name in received if name not in path_free} == {
        name: local[name] for name in local if name not in path_free}
    assert {"model.safetensors", "modeling_llm_srec.py", "processor_config.json", "item_catalog.json"} < set(received)
    published_config = json.loads(received["config.json"])
    assert published_config == {**json.loads(local["config.json"]), "llm_name_or_path": backbone.name}
    assert [name for name, content in received.items() if str(backbone.parent).encode() in content] == []
    teacher_files = hub.repos["test-user/tiny-real-sasrec"].revisions["main"]
    assert sorted(teacher_files) == ["README.md", "card.json", "config.json", "configuration_sasrec.py",
                                     "model.safetensors", "modeling_sasrec.py", "saving_llm_srec.py"]

    model_folder = _materialise(received, tmp_path / "pulled-model")
    teacher_folder = _materialise(teacher_files, tmp_path / "pulled-teacher")
    # The pulled config names the backbone folder by its name: the child runs next to it, as a user would.
    workdir, output = backbone.parent, tmp_path / "child.json"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_folder), str(teacher_folder), str(output)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
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
                                "model.safetensors", "modeling_sasrec.py", "saving_llm_srec.py"]
    assert "teacher of [`test-user/tiny-real`]" in received[README_FILE].decode()
    teacher = SASRecModel.from_pretrained(_materialise(received, tmp_path / "pulled")).eval()
    history = torch.tensor([[0, 0, 3, 7, 1], [0, 0, 0, 0, 5]])
    with torch.no_grad():
        torch.testing.assert_close(teacher.score(history), tiny_model.sasrec.score(history))


def test_teacher_push_refuses_a_model_that_is_not_sasrec(tiny_model: LLMSRecForRecommendation) -> None:
    with pytest.raises(ValueError, match="needs a SASRecModel"):
        push_sasrec_teacher(tiny_model, "test-user/x", endpoint="http://127.0.0.1:9")
