"""Trainer state (optimizer, scheduler, grad scaler, RNG) as safetensors + JSON instead of pickles.

Why: the project writes and loads no pickle files, while `Trainer` saves `optimizer.pt`, `scheduler.pt`,
`scaler.pt`, `rng_state.pth` and `training_args.bin` with `torch.save`. A state dict is split into its tensors
(one safetensors file, keys are the JSON path of each tensor) and everything else (one JSON file with the tensors
replaced by references), which round-trips any nesting of dicts, lists, tuples, numbers, strings and tensors.

Resuming: `Trainer` writes a checkpoint's model files, then its optimizer/scheduler/RNG state, then
trainer_state.json, so a checkpoint is complete when its trainer_state.json parses (and its safetensors files are
whole). `find_resumable_checkpoint` picks the newest complete one, skipping those a killed save left half written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from llm_srec.modeling.saving_llm_srec import check_safetensors_file

logger = logging.getLogger(__name__)

OPTIMIZER_STATE = "optimizer"
SCHEDULER_STATE = "scheduler"
SCALER_STATE = "scaler"
RNG_STATE = "rng_state"
TRAINER_STATE_FILE = "trainer_state.json"  # written last by Trainer._save_checkpoint: the completion mark
_TENSOR = "__tensor__"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_TUPLE = "__tuple__"


def _split(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able skeleton of ``value``; its tensors go to ``tensors`` under their path."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {_TENSOR: path}
    if isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(key, (str, int)) for key in keys):
            raise ValueError(f"cannot store a state with key types {sorted({type(k).__name__ for k in keys})}")
        return {
            "__dict__": [[key, _split(item, f"{path}.{key}", tensors)] for key, item in value.items()]
        }
    if isinstance(value, tuple):
        return {_TUPLE: [_split(item, f"{path}.{index}", tensors) for index, item in enumerate(value)]}
    if isinstance(value, list):
        return [_split(item, f"{path}.{index}", tensors) for index, item in enumerate(value)]
    if isinstance(value, np.ndarray):  # NumPy's MT19937 key is uint32, which safetensors/torch store as int64 here
        return _split(torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value.copy()), path, tensors)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot store a {type(value).__name__} at {path} as safetensors + JSON")


def _join(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _TUPLE in skeleton:
            return tuple(_join(item, tensors) for item in skeleton[_TUPLE])
        return {key: _join(item, tensors) for key, item in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [_join(item, tensors) for item in skeleton]
    return skeleton


def save_state(state: Any, directory: str | os.PathLike, name: str) -> None:
    """Write ``state`` as ``{name}.json`` (+ ``{name}.safetensors`` when it holds tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "state", tensors)
    os.makedirs(directory, exist_ok=True)
    if tensors:
        save_file(tensors, os.path.join(directory, f"{name}.safetensors"))
    with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as handle:
        json.dump(skeleton, handle, allow_nan=True)


def has_state(directory: str | os.PathLike, name: str) -> bool:
    return os.path.isfile(os.path.join(directory, f"{name}.json"))


def load_state(directory: str | os.PathLike, name: str, device: str | torch.device = "cpu") -> Any:
    """Read a state written by `save_state`; tensors are placed on ``device``."""
    with open(os.path.join(directory, f"{name}.json"), encoding="utf-8") as handle:
        skeleton = json.load(handle)
    tensor_file = os.path.join(directory, f"{name}.safetensors")
    tensors = load_file(tensor_file, device=str(device)) if os.path.isfile(tensor_file) else {}
    return _join(skeleton, tensors)


def rng_state_name(process_index: int, world_size: int) -> str:
    """One RNG file per process in distributed runs, as `Trainer` does."""
    return RNG_STATE if world_size <= 1 else f"{RNG_STATE}_{process_index}"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) CUDA generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.random.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (CUDA states only when this machine has the same number of devices)."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.random.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.random.set_rng_state_all(state["cuda"])


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a save killed midway), or None when it is complete."""
    checkpoint = os.fspath(checkpoint)
    try:
        with open(os.path.join(checkpoint, TRAINER_STATE_FILE), encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return f"no {TRAINER_STATE_FILE}"
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE_FILE} is truncated or corrupt ({error})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE_FILE} holds no global_step"
    for name in sorted(os.listdir(checkpoint)):
        if name.endswith(".safetensors"):
            try:
                check_safetensors_file(os.path.join(checkpoint, name))
            except (OSError, ValueError) as error:
                return str(error)
    return None


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The optimisation step a complete checkpoint was written at (its trainer_state.json's global_step)."""
    with open(os.path.join(os.fspath(checkpoint), TRAINER_STATE_FILE), encoding="utf-8") as handle:
        return int(json.load(handle)["global_step"])


def survey_checkpoints(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """The ``checkpoint-N`` folders of ``folder``, newest step first: (complete ones, [(incomplete one, why)])."""
    folder = os.fspath(folder)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return [], []
    steps = {entry: int(match.group(1)) for entry in entries if (match := _CHECKPOINT_NAME.match(entry))}
    complete: list[str] = []
    incomplete: list[tuple[str, str]] = []
    for entry in sorted(steps, key=steps.__getitem__, reverse=True):
        path = os.path.join(folder, entry)
        if not os.path.isdir(path):
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            complete.append(path)
        else:
            incomplete.append((path, problem))
    return complete, incomplete


def find_resumable_checkpoint(folder: str | os.PathLike) -> tuple[str, int]:
    """(path, step) of the newest complete checkpoint in ``folder``; newer incomplete ones are skipped with a
    warning naming each and why. ValueError when there is none."""
    complete, incomplete = survey_checkpoints(folder)
    newest = checkpoint_step(complete[0]) if complete else None
    for path, problem in incomplete:
        if newest is None or _step_of(path) > newest:
            logger.warning("Skipping the incomplete checkpoint %s (%s: interrupted while it was saved).", path, problem)
    if not complete:
        skipped = "; ".join(f"{os.path.basename(path)}: {problem}" for path, problem in incomplete)
        detail = f" (incomplete: {skipped})" if skipped else ""
        raise ValueError(f"No complete checkpoint to resume from in {os.fspath(folder)}{detail}")
    logger.info("Resuming from %s (step %d), the newest complete checkpoint.", complete[0], newest)
    return complete[0], newest


def _step_of(checkpoint: str) -> int:
    return int(_CHECKPOINT_NAME.match(os.path.basename(checkpoint)).group(1))


__all__ = [
    "OPTIMIZER_STATE",
    "RNG_STATE",
    "SCALER_STATE",
    "SCHEDULER_STATE",
    "TRAINER_STATE_FILE",
    "capture_rng_state",
    "checkpoint_problem",
    "checkpoint_step",
    "find_resumable_checkpoint",
    "has_state",
    "load_state",
    "restore_rng_state",
    "rng_state_name",
    "save_state",
    "survey_checkpoints",
]
