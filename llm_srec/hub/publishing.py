"""Publishing saved model folders on the Hugging Face Hub.

Why an allow-list: a training output folder also holds what must not leave the machine (raw data, trainer
state, nested checkpoints, a stray token file), so a push uploads the files that `save_pretrained`, the trainer
and `write_model_card` write, plus files the caller names, and never a file whose name looks like a secret. The
uploaded copies of the folder's metadata carry no absolute local path (the folder itself is left as it is), and
every way of failing to reach or to log in to the Hub ends in one `PublishError` whose message says what to do,
instead of a long httpx traceback.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HTTPError

from .cards import (
    CARD_FILE,
    CONFIG_FILE,
    DATA_STATISTICS_FILE,
    ITEM_CATALOG_FILE,
    METRICS_FILE,
    PROBE_FILE,
    README_FILE,
    TRAINING_ARGS_FILE,
    WEIGHTS_PATTERN,
    CardContext,
    json_text,
    render_model_card,
    write_json,
    write_model_card,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

PROCESSOR_CONFIG_FILE = "processor_config.json"  # written by LLMSRecProcessor.save_pretrained
# The top-level files a push uploads: what `save_pretrained` writes (config, weights or their shards and index,
# item index, processor settings, item catalog and tokenizer files), the trainer's training_args.json, and the card
# with its inputs. Anything else in the folder stays local unless it is named in `extra_files`.
MODEL_FILES: frozenset[str] = frozenset({
    CONFIG_FILE, "model.safetensors", "model.safetensors.index.json", "item_index.safetensors",
    PROCESSOR_CONFIG_FILE, ITEM_CATALOG_FILE, "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", README_FILE, CARD_FILE, METRICS_FILE, PROBE_FILE, DATA_STATISTICS_FILE,
    TRAINING_ARGS_FILE,
})
# Weight shards, and the remote-code sources that `custom_object_save` copies next to the config.
MODEL_FILE_PATTERNS: tuple[str, ...] = (
    "model-*-of-*.safetensors", "*_llm_srec.py", "*_sasrec.py",
)
# Names that look like credentials (matched case-insensitively): never uploaded, not even on request. The
# tokenizer files of MODEL_FILES are the only exception to `*token*`.
SECRET_PATTERNS: tuple[str, ...] = (
    ".env", ".env.*", ".netrc", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "credentials*", "*token*",
    "*secret*", "*password*",
)
# The uploaded copies of these files have their absolute local paths rewritten (CardContext field per file).
_PATH_FREE_FIELDS = {
    CONFIG_FILE: "config", TRAINING_ARGS_FILE: "training_args", DATA_STATISTICS_FILE: "data_statistics",
}
# POSIX, home-relative, Windows drive and UNC paths; a lone "/" or a string ending in whitespace is not a path.
_LOCAL_PATH = re.compile(r"(?:/|~[/\\]|[A-Za-z]:[\\/]|\\\\)[^\n]*[^\s\\/][\\/]*")
_LOGIN_HINT = "run `hf auth login` or set HF_TOKEN"


class PublishError(Exception):
    """A push that cannot happen; the one-line message says why and what to do."""


class HubUnreachableError(PublishError, ConnectionError):
    """The Hub cannot be reached: offline mode, no network, or a wrong endpoint."""


class HubAuthError(PublishError, PermissionError):
    """No token, a token the Hub rejects, or a token without write access to the repo."""


class PushFiles(NamedTuple):
    """What a push of a folder uploads (repo paths) and leaves out (top-level names, folders ending in '/')."""

    upload: list[str]
    left_out: list[str]
    secrets: list[str]


def push_model_folder(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    teacher_repo_id: str | None = None,
    parent_repo_id: str | None = None,
    extra_files: Sequence[str | os.PathLike] = (),
) -> CommitInfo:
    """Create the repo (if needed), re-render the folder's card for it and upload its model files in one commit.

    Keyword arguments follow transformers v5 `push_to_hub`. `revision` names a branch (created from the default
    branch if missing) or an open PR ref (`refs/pr/N`); `create_pr` opens a new PR against the default branch.
    `teacher_repo_id` / `parent_repo_id` record the linked SASRec teacher / LLM-SRec repo for the card. Only the
    model files are uploaded (`select_push_files`; `extra_files`, relative to the folder, adds others), and the
    uploaded config.json, training_args.json, data_statistics.json and card name no absolute local path.

    Raises `HubUnreachableError` (offline, no network), `HubAuthError` (not logged in, token refused) or
    `PublishError` (the Hub refused the push); offline or without a token, before any request is made.
    """
    if create_pr and revision is not None:
        raise ValueError(
            "create_pr opens a pull request against the default branch; do not combine it with a revision"
        )
    folder = Path(model_dir)
    kind = CardContext.from_folder(folder).kind
    files = select_push_files(folder, extra_files)
    api = HfApi(endpoint=endpoint, token=token)
    _check_can_push(api)
    with _hub_errors(api, repo_id):
        repo_id = _prepare_repo(api, repo_id, private=private, revision=revision)
    # Warned only now that the push goes ahead, so a failed one ends in its error line alone.
    if files.left_out:
        logger.warning("%s: not uploading %s: not model files (name non-secret ones in extra_files / "
                       "--include-extra to upload them)", folder, ", ".join(files.left_out))
    if files.secrets:
        logger.warning("%s: never uploading %s: the names look like secrets", folder, ", ".join(files.secrets))
    write_model_card(folder, repo_id=repo_id, teacher_repo_id=teacher_repo_id, parent_repo_id=parent_repo_id)
    names = sorted({*files.upload, README_FILE, CARD_FILE})  # the card files exist now
    contents: dict[str, bytes | Path] = {name: folder / name for name in names}
    contents.update(_path_free_copies(folder))
    default_message = "Upload LLM-SRec model" if kind == "llm_srec" else "Upload SASRec model"
    with _hub_errors(api, repo_id):
        return api.create_commit(
            repo_id,
            [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content) for name, content in contents.items()],
            commit_message=commit_message or default_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )


def select_push_files(model_dir: str | os.PathLike, extra_files: Sequence[str | os.PathLike] = ()) -> PushFiles:
    """What a push of `model_dir` uploads: its model files (`MODEL_FILES`, `MODEL_FILE_PATTERNS`) and
    `extra_files` (files or folders inside `model_dir`, relative to it).

    Everything else (data, trainer state, checkpoints, any folder) is left out; a file whose name looks like a
    secret (`SECRET_PATTERNS`) is never uploaded, and asking for one in `extra_files` raises a ValueError.
    """
    folder = Path(model_dir)
    selected, left_out, secrets = [], [], []
    for entry in sorted(folder.iterdir()):
        listed = entry.name + "/" if entry.is_dir() else entry.name
        if entry.is_file() and _secret_pattern(entry.name):
            secrets.append(listed)
        elif entry.is_file() and _is_model_file(entry.name):
            _check_inside(entry, folder)
            selected.append(entry.name)
        else:
            left_out.append(listed)
    for extra in extra_files:
        relative, names = _extra_files(folder, extra)
        selected += names
        left_out = [listed for listed in left_out if listed.rstrip("/") != relative]
    return PushFiles(sorted(set(selected)), left_out, secrets)


def push_sasrec_teacher(
    source: "PreTrainedModel | str | os.PathLike",
    repo_id: str,
    *,
    parent_repo_id: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """Push a SASRec teacher as its own repo, with its own card linking to the LLM-SRec model it serves.

    `source` is a `SASRecModel` (e.g. `model.sasrec`), a SASRec model folder (pushed as is, with its own
    metrics), or an LLM-SRec model folder, whose teacher is extracted from the saved weights without loading
    the backbone (its card then carries the parent's data statistics).
    """
    push = dict(private=private, revision=revision, create_pr=create_pr, commit_description=commit_description,
                token=token, endpoint=endpoint, commit_message=commit_message or "Upload SASRec teacher",
                parent_repo_id=parent_repo_id)
    if isinstance(source, (str, os.PathLike)) and CardContext.from_folder(source).kind == "sasrec":
        return push_model_folder(source, repo_id, **push)
    if not isinstance(source, (str, os.PathLike)) and getattr(source.config, "model_type", None) != "sasrec":
        raise ValueError(f"push_sasrec_teacher needs a SASRecModel or a model folder, got {type(source).__name__}")
    with tempfile.TemporaryDirectory(prefix="llm-srec-teacher-") as staging:
        if isinstance(source, (str, os.PathLike)):
            extract_sasrec_teacher(source, staging)
        else:
            source.save_pretrained(staging)
        return push_model_folder(staging, repo_id, **push)


def push_model_to_hub(
    model: "PreTrainedModel",
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    endpoint: str | None = None,
) -> CommitInfo:
    """`PreTrainedModel.push_to_hub` with our card: what the model classes' `push_to_hub` delegates to.

    transformers' own `push_to_hub` replaces README.md with a generic card after `save_pretrained`; this saves
    into a staging folder, renders our card there and pushes it with `push_model_folder`.
    """
    with tempfile.TemporaryDirectory(prefix="llm-srec-push-") as staging:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        if tags:
            write_model_card(staging, tags=tags)
        return push_model_folder(
            staging, repo_id, private=private, revision=revision, create_pr=create_pr,
            commit_message=commit_message, commit_description=commit_description, token=token, endpoint=endpoint,
        )


def extract_sasrec_teacher(model_dir: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Save an LLM-SRec folder's frozen SASRec teacher (`sasrec.*` weights, `sasrec_config`) as a SASRec folder."""
    from safetensors.torch import load_file

    from llm_srec.modeling.configuration_sasrec import SASRecConfig
    from llm_srec.modeling.modeling_sasrec import SASRecModel

    folder = Path(model_dir)
    context = CardContext.from_folder(folder)
    if context.kind != "llm_srec" or not isinstance(context.config.get("sasrec_config"), dict):
        raise ValueError(f"{folder} is not an LLM-SRec model folder with a sasrec_config; no teacher to extract")
    prefix = "sasrec."
    state = {
        name[len(prefix):]: tensor
        for weights in sorted(folder.glob(WEIGHTS_PATTERN))
        for name, tensor in load_file(weights).items()
        if name.startswith(prefix)
    }
    if not state:
        raise ValueError(f"{folder} holds no '{prefix}*' weights; no teacher to extract")
    teacher = SASRecModel(SASRecConfig.from_dict(context.config["sasrec_config"]))
    teacher.load_state_dict(state, strict=True)
    output = Path(output_dir)
    teacher.save_pretrained(output)
    if context.data_statistics is not None:
        write_json(output / DATA_STATISTICS_FILE, context.data_statistics)
    return output


def _check_inside(path: Path, folder: Path) -> None:
    """Refuse a file whose real path (links followed) is outside ``folder``: a link named like a model file would
    otherwise upload whatever it points to."""
    target = path.resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(f"{path} is a link to {target}, outside {folder}; only files inside the model folder are "
                         "pushed (replace the link by a copy of the file)")


def _is_model_file(name: str) -> bool:
    return name in MODEL_FILES or any(fnmatch.fnmatchcase(name, pattern) for pattern in MODEL_FILE_PATTERNS)


def _secret_pattern(name: str) -> str | None:
    """The `SECRET_PATTERNS` entry that `name` matches, if any."""
    if name in MODEL_FILES:
        return None
    return next((pattern for pattern in SECRET_PATTERNS if fnmatch.fnmatchcase(name.lower(), pattern)), None)


def _extra_files(folder: Path, extra: str | os.PathLike) -> tuple[str, list[str]]:
    """`extra`'s path relative to `folder` and the repo paths of the files it names (a folder: all files in it)."""
    path = Path(extra) if Path(extra).is_absolute() else folder / extra
    if not path.exists():
        raise FileNotFoundError(f"extra file {os.fspath(extra)!r} does not exist in {folder}")
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"extra file {os.fspath(extra)!r} is outside {folder}; only files of the model folder "
                         "can be pushed")
    files = [path] if path.is_file() else sorted(file for file in path.rglob("*") if file.is_file())
    for file in files:
        _check_inside(file, folder)
    names = [file.resolve().relative_to(root).as_posix() for file in files]
    for name in names:
        for part in name.split("/"):
            if pattern := _secret_pattern(part):
                raise ValueError(f"extra file {name!r} looks like a secret (matches {pattern!r}); secrets are "
                                 "never pushed")
    return path.resolve().relative_to(root).as_posix(), names


def _path_free_copies(folder: Path) -> dict[str, bytes]:
    """Uploaded contents that differ from the local files: metadata without absolute local paths, and the card
    rendered from it. Logs what was rewritten; empty when the folder names no local path."""
    context = CardContext.from_folder(folder)
    cleaned: dict[str, Any] = {}
    rewrites: list[str] = []
    for name, field_name in _PATH_FREE_FIELDS.items():
        found: list[str] = []
        content = _without_local_paths(getattr(context, field_name), found)
        if found:
            cleaned[field_name] = content
            rewrites += [f"{name} {rewrite}" for rewrite in found]
    if not rewrites:
        return {}
    logger.warning("%s: the uploaded copies name no local paths (the local files are unchanged): %s",
                   folder, "; ".join(rewrites))
    copies = {name: json_text(cleaned[key]).encode() for name, key in _PATH_FREE_FIELDS.items() if key in cleaned}
    copies[README_FILE] = str(render_model_card(dataclasses.replace(context, **cleaned))).encode("utf-8")
    return copies


def _without_local_paths(value: Any, rewrites: list[str], key: str = "", location: str = "") -> Any:
    """`value` with each absolute local path replaced: a `*_dir` folder by null, anything else (a backbone folder,
    a checkpoint) by its base name; `rewrites` collects `location -> replacement`. Hub ids are not paths."""
    if isinstance(value, dict):
        return {
            name: _without_local_paths(item, rewrites, name, f"{location}.{name}" if location else name)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_without_local_paths(item, rewrites, key, f"{location}[{i}]") for i, item in enumerate(value)]
    if not (isinstance(value, str) and _LOCAL_PATH.fullmatch(value)):
        return value
    replacement = None if key.endswith("_dir") else re.split(r"[\\/]", value.rstrip("\\/"))[-1]
    rewrites.append(f"{location} -> {json.dumps(replacement)}")
    return replacement


def _check_can_push(api: HfApi) -> None:
    """Fail before any request when the push cannot work: offline mode, or no token to authenticate with."""
    if constants.is_offline_mode():
        raise HubUnreachableError(
            f"cannot reach the Hub at {api.endpoint}: offline mode is on (HF_HUB_OFFLINE); unset HF_HUB_OFFLINE "
            "to push"
        )
    if api.token is False or (not isinstance(api.token, str) and get_token() is None):
        raise HubAuthError(f"not logged in: {_LOGIN_HINT}")


@contextmanager
def _hub_errors(api: HfApi, repo_id: str) -> Iterator[None]:
    """Turn huggingface_hub's HTTP and httpx connection errors into one-line `PublishError`s.

    The originals stay reachable as `__context__`; `from None` keeps their 45-80 frames out of the traceback.
    """
    try:
        yield
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        reason = error.server_message or str(error).split("\n", 1)[0]
        if status == 401:
            raise HubAuthError(f"the Hub at {api.endpoint} rejected the token ({reason}): {_LOGIN_HINT}") from None
        if status == 403:
            raise HubAuthError(
                f"the token may not write to {repo_id} on {api.endpoint} ({reason}): use a token with write access"
            ) from None
        raise PublishError(
            f"the Hub at {api.endpoint} refused the push to {repo_id} (HTTP {status}): {reason}"
        ) from None
    except HTTPError as error:
        raise HubUnreachableError(
            f"cannot reach the Hub at {api.endpoint}: {str(error) or type(error).__name__}; check your network or "
            "HF_ENDPOINT"
        ) from None


def _prepare_repo(api: HfApi, repo_id: str, *, private: bool | None, revision: str | None) -> str:
    """Create the repo and the target branch; returns the repo id the Hub resolved (owner added if missing)."""
    resolved = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(resolved, branch=revision, exist_ok=True)
    return resolved
