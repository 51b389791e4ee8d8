"""Saving model folders atomically and checking them on load; `push_to_hub` with the package's model card.

Stdlib only (this file also runs as Hub remote code). A model folder is written into a hidden staging folder next to
it and renamed into place, so a save that fails or is killed leaves the previous folder (or none), never a
half-written one; loading checks that the folder is complete and names what is missing or corrupt.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any

logger = logging.getLogger(__name__)

INTERRUPTED_SAVE = "(an interrupted save?)"
_WEIGHTS_NAME = "model.safetensors"
_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_STAGING_MARK = ".saving-"  # sibling ".{name}.saving-{token}": the new folder being written
_REPLACED_MARK = ".replaced-"  # sibling ".{name}.replaced-{token}": the previous folder while it is swapped out
_INNER_STAGING = ".llm_srec-saving-"  # staging inside the folder, when it cannot be renamed (e.g. a mount point)
# Files that describe the model a folder holds (weights, config, processor and tokenizer, model card and its
# inputs, a checkpoint's trainer state): a new save replaces them, and drops those it does not write again. Every
# other entry (subfolders such as checkpoints/, the modeling code, unrelated files) is kept.
_MODEL_FILES = frozenset({
    "config.json", "generation_config.json", _WEIGHTS_INDEX_NAME, "processor_config.json",
    "preprocessor_config.json", "item_catalog.json", "special_tokens_map.json", "added_tokens.json", "merges.txt",
    "spiece.model", "item_index.safetensors", "README.md", "card.json", "metrics.json", "probe.json",
    "data_statistics.json", "training_args.json", "trainer_state.json",
})
_MODEL_FILE_PATTERNS = (
    "model*.safetensors", "tokenizer*", "vocab.*", "chat_template*", "optimizer.*", "scheduler.*", "scaler.*",
    "rng_state*",
)
_active_stagings: list[str] = []


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; a broken file is a ValueError naming it, its line and column.

    Why: `json`'s own message ("Expecting value: line 1 column 1") names no file, and a model or data folder holds
    several. It lives here (stdlib only) because every saved folder, SASRec's too, ships this module as remote code,
    and the library reads its JSON files with it too.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        payload = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: byte {error.start + 1} is not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON (line {error.lineno} column {error.colno}): {error.msg}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a JSON object (found a {type(payload).__name__})")
    return payload


def incomplete_folder_message(folder: str | os.PathLike, missing: Sequence[str]) -> str:
    return f"{os.fspath(folder)} is incomplete: missing {', '.join(missing)} {INTERRUPTED_SAVE}"


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Raise a one-line ValueError naming ``path`` unless it is a complete safetensors file (only its header is
    read); FileNotFoundError when it does not exist."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ValueError(f"it has {size} bytes, fewer than the 8 of the header size")
            length = int.from_bytes(prefix, "little")
            if length > size - 8:
                raise ValueError(f"its header would take {length} bytes but the file has {size}")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
        if 8 + length + end != size:
            raise ValueError(f"its tensors need {8 + length + end} bytes but the file has {size}")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist {INTERRUPTED_SAVE}") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {error}") from None


def check_model_folder(folder: str | os.PathLike, require_config: bool = True) -> None:
    """A local model folder holds its config.json and complete safetensors weights (FileNotFoundError naming the
    missing files, ValueError naming a truncated or corrupt one)."""
    folder = os.fspath(folder)
    missing = ["config.json"] if require_config and not os.path.isfile(os.path.join(folder, "config.json")) else []
    index = os.path.join(folder, _WEIGHTS_INDEX_NAME)
    shards = [_WEIGHTS_NAME]
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{index} is not a valid weights index (truncated or corrupt?): {error}") from None
    missing += [shard for shard in shards if not os.path.isfile(os.path.join(folder, shard))]
    if missing:
        raise FileNotFoundError(incomplete_folder_message(folder, missing))
    for shard in shards:
        check_safetensors_file(os.path.join(folder, shard))


def _is_model_file(folder: str, name: str) -> bool:
    if os.path.isdir(os.path.join(folder, name)) and not os.path.islink(os.path.join(folder, name)):
        return False
    return name in _MODEL_FILES or any(fnmatch.fnmatchcase(name, pattern) for pattern in _MODEL_FILE_PATTERNS)


def _siblings(target: str, mark: str) -> list[str]:
    parent, name = os.path.split(target)
    prefix = f".{name}{mark}"
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    return sorted(os.path.join(parent, entry) for entry in entries if entry.startswith(prefix))


def _carry_over(previous: str, target: str) -> None:
    """Move the entries of the previous folder that are not its model's files, and that the new save did not
    write, into the new folder."""
    for entry in os.listdir(previous):
        if entry.startswith(_INNER_STAGING) or _is_model_file(previous, entry):
            continue
        if not os.path.lexists(os.path.join(target, entry)):
            os.rename(os.path.join(previous, entry), os.path.join(target, entry))


def recover_interrupted_save(save_directory: str | os.PathLike) -> None:
    """Clean up after a save into ``save_directory`` that was killed: its staging folder is deleted, and a folder
    swap stopped between its renames is finished (the kept entries move into the new folder) or, when the new
    folder never got in, undone."""
    target = os.path.realpath(os.fspath(save_directory))
    stagings = _siblings(target, _STAGING_MARK)
    if os.path.isdir(target):
        stagings += [os.path.join(target, entry) for entry in os.listdir(target) if entry.startswith(_INNER_STAGING)]
    for staging in stagings:
        shutil.rmtree(staging, ignore_errors=True)
    for previous in _siblings(target, _REPLACED_MARK):
        if not os.path.lexists(target):
            os.rename(previous, target)
        else:
            _carry_over(previous, target)
            shutil.rmtree(previous, ignore_errors=True)


def _can_swap(target: str) -> bool:
    """Whether the folder may be renamed: not a mount point, nor the working directory or one above it."""
    if not os.path.isdir(target):
        return True
    if os.path.ismount(target):
        return False
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        return True
    return cwd != target and not cwd.startswith(target + os.sep)


def _new_staging(target: str) -> tuple[str, bool]:
    """A fresh staging folder and whether it sits next to ``target`` (then swapped in) rather than inside it."""
    parent, name = os.path.split(target)
    token = uuid.uuid4().hex[:12]
    if _can_swap(target):
        staging = os.path.join(parent, f".{name}{_STAGING_MARK}{token}")
        try:
            os.mkdir(staging)
            return staging, True
        except OSError:  # e.g. a read-only parent: stage inside the folder instead
            pass
    os.makedirs(target, exist_ok=True)
    staging = os.path.join(target, f"{_INNER_STAGING}{token}")
    os.mkdir(staging)
    return staging, False


def _swap_in(staging: str, target: str) -> None:
    """Rename the previous folder aside, the new one in, carry the kept entries over and delete the previous one."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    parent, name = os.path.split(target)
    previous = os.path.join(parent, f".{name}{_REPLACED_MARK}{uuid.uuid4().hex[:12]}")
    with contextlib.suppress(OSError):
        shutil.copymode(target, staging)
    os.rename(target, previous)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(previous, target)
        raise
    _carry_over(previous, target)
    shutil.rmtree(previous, ignore_errors=True)


def _move_in(staging: str, target: str) -> None:
    """Fallback when the folder cannot be renamed: move the new files in one by one. config.json leaves first and
    comes back last, so a folder caught in between is no loadable model rather than a mixed one."""
    new = set(os.listdir(staging))
    for entry in os.listdir(target):
        path = os.path.join(target, entry)
        if path == staging or entry.startswith(_INNER_STAGING):
            continue
        if entry == "config.json" or (entry not in new and _is_model_file(target, entry)):
            os.remove(path)
    for entry in sorted(new, key=lambda name: name == "config.json"):
        destination = os.path.join(target, entry)
        if os.path.isdir(destination) and not os.path.islink(destination):
            shutil.rmtree(destination)
        os.replace(os.path.join(staging, entry), destination)
    os.rmdir(staging)


@contextlib.contextmanager
def staged_model_folder(save_directory: str | os.PathLike) -> Iterator[str]:
    """Yield an empty folder to write a model folder into; when the block succeeds it replaces ``save_directory``.

    The previous folder's model files (weights, config, processor, tokenizer, card, checkpoint state) go, its other
    entries (e.g. ``checkpoints/``) are kept. When the block raises, the staging folder is deleted and
    ``save_directory`` is untouched. Saves nested in a staged save (the trainer writing the model, then its card)
    write straight into the outer staging folder. A folder that cannot be renamed (a mount point, the working
    directory) gets its files moved in one by one instead.
    """
    target = os.path.realpath(os.fspath(save_directory))
    if os.path.lexists(target) and not os.path.isdir(target):
        raise ValueError(f"save_directory {os.fspath(save_directory)} is a file, not a folder.")
    if any(target == staging or target.startswith(staging + os.sep) for staging in _active_stagings):
        os.makedirs(target, exist_ok=True)
        yield target
        return
    recover_interrupted_save(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging, beside = _new_staging(target)
    _active_stagings.append(staging)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _active_stagings.remove(staging)
    if beside:
        try:
            _swap_in(staging, target)
            return
        except OSError as error:
            logger.warning("Could not rename %s into place (%s): moving its files in one by one.", target, error)
    else:
        logger.warning("%s cannot be renamed (a mount point or the working directory): its files are replaced "
                       "one by one, so a save killed midway leaves it without config.json.", target)
    _move_in(staging, target)


def is_complete_json(path: str) -> bool:
    """Parses as JSON (files over 8 MiB, e.g. a large catalog, are only checked to end their top-level object)."""
    try:
        if os.path.getsize(path) <= 8 << 20:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
            return True
        with open(path, "rb") as handle:
            handle.seek(-64, os.SEEK_END)
            return handle.read().rstrip().endswith((b"}", b"]"))
    except (OSError, ValueError):
        return False


CARD_PUSHER_ENTRY_POINTS = "llm_srec.push_to_hub"


class ModelCardPushMixin:
    """`push_to_hub` that uploads the package's model card (hub_cards/) instead of transformers' generic one.

    Why an entry point (group ``llm_srec.push_to_hub``, declared in setup.cfg): the card renderer belongs to the
    installed `llm_srec` library, which this remote-code file must not import; where it is not installed,
    transformers' own push runs.
    """

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        for entry_point in entry_points(group=CARD_PUSHER_ENTRY_POINTS):
            return entry_point.load()(self, repo_id, **kwargs)
        return super().push_to_hub(repo_id, **kwargs)
