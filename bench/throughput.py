"""Throughput at real catalog sizes (issue 14): before/after ratios, each measured side by side in one run.

Parts (``--parts``, results merged into ``bench/results/throughput.json`` part by part, so they can run separately):

- ``step``: one LLM-SRec training step (forward of 20 Scientific users and their 80 candidate prompts, losses,
  backward, Adam) with the item-prompt prefix cache off (``item_prefix_cache_mb=0``: the code before it) and on
  (warm: every candidate prefix already cached, the steady state once the catalog has been seen, e.g. after the
  first validation). Same model, same batch, A/B then B/A. The loss and gradients of both are compared first.
  ``step_speedup`` = median off / median on. The ``bare`` side of the step-ratio target is the same backbone work
  without LLM-SRec: forward + backward of the user prompts and of the item suffixes over the same cached prefixes.
- ``validation``: one `RankingEvaluator` pass over the validation users (``--eval-users``, both protocols, the
  whole catalog encoded) as before (cache off, one padded forward per batch, users in split order) and as now
  (cache on and warm, length groups, users batched by prompt length). The cold pass (the first one, which fills the
  cache) is reported too. ``validation_speedup`` = median before / median warm (the smallest over the backbones).
- ``recommend``: time to the first answer of `recommend` in a fresh process, excluding the backbone load (the
  backbone is loaded first and passed as ``llm=``): `from_pretrained` + the first `recommend` call, from a folder
  without ``item_index.safetensors`` and the prefix cache off (before) and from the same folder with the saved
  index (now). ``recommend_time_ratio`` = median now / median before.
- ``sasrec``: `bench/sasrec_speed.py`'s measure (package SASRec vs a pmixer/SASRec.pytorch re-implementation,
  BCE and cross-entropy): ``sasrec_epoch_vs_pmixer_bce`` / ``_ce``.

Usage:
    python bench/throughput.py                                  # all parts, tiny-llama + llama-384x6 steps
    python bench/throughput.py --parts step --backbones llama-384x6 --repeats 5
    python bench/throughput.py --quick                          # small repeats, tiny-llama only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, WORK_DIR, backbone_path, build_model, load_dataset, machine_info, set_threads, summary, write_json,
)
from speed import Workloads, interleave  # noqa: E402

from llm_srec.evaluation.ranking import RankingEvaluator  # noqa: E402
from llm_srec.modeling.length_groups_llm_srec import length_groups_with_columns  # noqa: E402
from llm_srec.modeling.prefix_cache_llm_srec import split_item_prompts, stack_prefix_states  # noqa: E402

CACHE_MB = 1024  # the config default; --cache-mb overrides it


def _ratio_of_pairs(numerator: list[float], denominator: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(numerator, denominator)), 4)


# ------------------------------------------------------------------------------------------------ (a) step
class CachedBareStep:
    """The bare backbone's forward + backward on the work the LLM-SRec step now gives it: the user prompts in the
    same length groups, the item suffixes (slot onwards) over the cached prefix states; ``inputs_embeds`` require
    grad."""

    def __init__(self, work: Workloads) -> None:
        self.work = work
        model, batch = work.model, work.batch
        history_id, _, item_id = work._special
        self.prefixes, self.suffixes = split_item_prompts(
            batch["candidate_input_ids"], batch["candidate_attention_mask"], history_id
        )
        self.item_id = item_id
        pad_id = model._special_token_ids()[3]
        width = max(len(suffix) for suffix in self.suffixes)
        self.suffix_ids = torch.full((len(self.suffixes), width), pad_id, dtype=torch.long)
        self.suffix_mask = torch.zeros_like(self.suffix_ids)
        for row, suffix in enumerate(self.suffixes):
            self.suffix_ids[row, : len(suffix)] = torch.as_tensor(suffix)
            self.suffix_mask[row, : len(suffix)] = 1

    def _users(self) -> torch.Tensor:
        """The user prompts in the model's length groups, each trimmed to its longest prompt (as the model runs)."""
        batch = self.work.batch
        parts = [
            self.work._bare_forward(batch["input_ids"][rows][:, kept], batch["attention_mask"][rows][:, kept],
                                    self.work._special[1], True)
            for rows, kept in length_groups_with_columns(batch["attention_mask"])
        ]
        return torch.cat(parts)

    def __call__(self) -> float:
        model = self.work.model
        model.train()
        users = self._users()
        embedding = model.llm.get_input_embeddings()
        cache, prefix_mask, prefix_lengths = stack_prefix_states(model._item_prefix_cache.states(self.prefixes))
        embeds = embedding(model.backbone_lookup_ids(self.suffix_ids)).detach().requires_grad_(True)
        positions = prefix_lengths.unsqueeze(1) + torch.arange(self.suffix_ids.shape[1])
        hidden = model.llm(
            inputs_embeds=embeds, attention_mask=torch.cat([prefix_mask, self.suffix_mask], dim=1),
            position_ids=positions, cache=cache, use_cache=True,
        ).last_hidden_state
        output = ((self.suffix_ids == self.item_id) & self.suffix_mask.bool()).int().argmax(-1)
        items = hidden[torch.arange(hidden.shape[0]), output]
        loss = users.float().sum() + items.float().sum()
        loss.backward()
        return float(loss.detach())


# the code before issue 14 (no prefix cache, one padded forward per batch), each lever alone, and both
STEP_VARIANTS = {
    "before": {"item_prefix_cache_mb": 0, "group_prompts_by_length": False},
    "prefix_cache_only": {"item_prefix_cache_mb": CACHE_MB, "group_prompts_by_length": False},
    "length_groups_only": {"item_prefix_cache_mb": 0, "group_prompts_by_length": True},
    "now": {"item_prefix_cache_mb": CACHE_MB, "group_prompts_by_length": True},
}


def _configure(model, variant: str) -> None:
    for name, value in STEP_VARIANTS[variant].items():
        setattr(model, name, value)


def _loss_and_gradients(work: Workloads, variant: str) -> tuple[float, dict[str, torch.Tensor]]:
    model = work.model
    _configure(model, variant)
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model(**work.batch).loss
    loss.backward()
    gradients = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), gradients


def measure_step(backbone: str, repeats: int) -> dict[str, Any]:
    data = load_dataset("scientific")
    model = build_model(data, backbone_path(backbone, data))
    work = Workloads(model, data, 20, 4, 64, 64, "cpu", backbone)
    loss_before, grads_before = _loss_and_gradients(work, "before")
    start = time.perf_counter()
    loss_cold, _ = _loss_and_gradients(work, "now")  # cold: fills the cache
    cold = time.perf_counter() - start
    loss_now, grads_now = _loss_and_gradients(work, "now")
    gradient_difference = max((grads_now[name] - grads_before[name]).abs().max().item() for name in grads_before)
    bare_cached = CachedBareStep(work)

    def step(variant: str):
        def run() -> float:
            _configure(model, variant)
            return work.llm_srec_step()
        return run

    def bare(step_fn):
        def run() -> float:
            _configure(model, "now")
            return step_fn()
        return run

    pairs = {variant: step(variant) for variant in STEP_VARIANTS}
    pairs.update({"bare_full": bare(work.bare_step), "bare_cached": bare(bare_cached)})
    times = interleave(pairs, repeats, torch.device("cpu"))
    return {
        "backbone": backbone,
        "backbone_parameters": work.backbone_parameters,
        "item_prefix_cache_mb": STEP_VARIANTS["now"]["item_prefix_cache_mb"],
        "batch": work.tokens(),
        "suffix_tokens_per_item_prompt": max(len(s) for s in bare_cached.suffixes),
        "length_groups_of_the_user_prompts": [
            len(rows) for rows, _ in length_groups_with_columns(work.batch["attention_mask"])
        ],
        "loss": {"before": loss_before, "now_cold_cache": loss_cold, "now_warm_cache": loss_now,
                 "max_abs_gradient_difference": gradient_difference},
        "cold_cache_step_seconds_forward_backward": round(cold, 4),
        "seconds": {name: summary(values) for name, values in times.items()},
        "step_speedup": _ratio_of_pairs(times["before"], times["now"]),
        "step_speedup_prefix_cache_only": _ratio_of_pairs(times["before"], times["prefix_cache_only"]),
        "step_speedup_length_groups_only": _ratio_of_pairs(times["before"], times["length_groups_only"]),
        "step_ratio_vs_bare_cached": _ratio_of_pairs(times["now"], times["bare_cached"]),
        "step_ratio_before_vs_bare_full": _ratio_of_pairs(times["before"], times["bare_full"]),
    }


# ------------------------------------------------------------------------------------------ (b) validation
def measure_validation(backbone: str, eval_users: int, repeats: int) -> dict[str, Any]:
    data = load_dataset("scientific")
    model = build_model(data, backbone_path(backbone, data)).eval()
    split = data.splits["validation"]
    before = RankingEvaluator(split, data.num_items, max_users=eval_users, batch_size=64, length_grouping=False)
    now = RankingEvaluator(split, data.num_items, max_users=eval_users, batch_size=64, length_grouping=True)

    def run(evaluator: RankingEvaluator, variant: str):
        def call():
            _configure(model, variant)
            return evaluator.evaluate(model, show_progress=False)
        return call

    metrics_before = run(before, "before")()
    model.clear_item_prefix_cache()
    start = time.perf_counter()
    metrics_now = run(now, "now")()
    cold = time.perf_counter() - start
    times = interleave({"before": run(before, "before"), "now_warm": run(now, "now")}, repeats, torch.device("cpu"), 0)
    difference = max(
        abs(metrics_now[protocol][name] - value)
        for protocol, values in metrics_before.items() for name, value in values.items()
    )
    return {
        "backbone": backbone,
        "catalog_items": data.num_items,
        "item_prefix_cache_mb": STEP_VARIANTS["now"]["item_prefix_cache_mb"],
        "users": before.num_users,
        "protocols": list(metrics_before),
        "cold_now_seconds": round(cold, 3),
        "seconds": {name: summary(values) for name, values in times.items()},
        "validation_speedup": _ratio_of_pairs(times["before"], times["now_warm"]),
        "validation_speedup_cold": round(statistics.median(times["before"]) / cold, 4),
        "max_abs_metric_difference": difference,
        "prefix_cache_mib_for_the_catalog": round(model._item_prefix_cache.nbytes / 2**20, 1),
        "metrics_now": metrics_now,
    }


# ------------------------------------------------------------------------------------------- (c) recommend
_RECOMMEND_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from transformers import AutoModel
from llm_srec.modeling import LLMSRecForRecommendation
folder, backbone, cache_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = AutoModel.from_pretrained(backbone)
start = time.perf_counter()
model = LLMSRecForRecommendation.from_pretrained(folder, llm=llm)
model.item_prefix_cache_mb = cache_mb
loaded = time.perf_counter()
ids = model.processor.item_catalog.external_ids
answer = model.recommend([ids[:5], ids[10:13]], k=10)
done = time.perf_counter()
print(json.dumps({"load_s": loaded - start, "first_answer_s": done - start, "index_loaded": True,
                  "top": answer[0].item_ids[:3]}))
"""


def measure_recommend(backbone: str, repeats: int) -> dict[str, Any]:
    data = load_dataset("scientific")
    path = backbone_path(backbone, data)
    model = build_model(data, path).eval()
    folder = WORK_DIR / "throughput" / f"recommend-{backbone}"
    without = WORK_DIR / "throughput" / f"recommend-{backbone}-no-index"
    model.refresh_item_index()
    model.save_pretrained(folder)
    shutil.rmtree(without, ignore_errors=True)
    shutil.copytree(folder, without)
    (without / "item_index.safetensors").unlink()

    def child(target: Path, cache_mb: int) -> dict[str, Any]:
        output = subprocess.run(
            [sys.executable, "-c", _RECOMMEND_CHILD, str(target), path, str(cache_mb)],
            check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        return json.loads(output.stdout.strip().splitlines()[-1])

    runs: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    for repeat in range(repeats):
        order = (("before", without, 0), ("now", folder, CACHE_MB))
        for name, target, cache_mb in order if repeat % 2 == 0 else order[::-1]:
            runs[name].append(child(target, cache_mb))
    same_answer = all(run["top"] == runs["before"][0]["top"] for run in runs["before"] + runs["now"])
    first = {name: [run["first_answer_s"] for run in values] for name, values in runs.items()}
    return {
        "backbone": backbone,
        "catalog_items": data.num_items,
        "seconds_to_first_answer_excluding_backbone_load": {name: summary(values) for name, values in first.items()},
        "load_seconds": {name: summary([run["load_s"] for run in values]) for name, values in runs.items()},
        "recommend_time_ratio": round(statistics.median(first["now"]) / statistics.median(first["before"]), 4),
        "same_top_items": same_answer,
    }


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["step", "validation", "recommend", "sasrec"],
                        choices=["step", "validation", "recommend", "sasrec"])
    parser.add_argument("--backbones", nargs="+", default=["tiny-llama", "llama-384x6"],
                        help="backbones of the step and validation parts (recommend uses the first)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2 repeats, tiny-llama, 100 validation users")
    parser.add_argument("--cache-mb", type=int, default=CACHE_MB,
                        help="item_prefix_cache_mb of the 'now' side (1024, the default; a catalog needs more on a "
                        "large backbone, see prefix_cache_mib_for_the_catalog)")
    parser.add_argument("--sasrec-args", nargs=argparse.REMAINDER, default=[],
                        help="arguments passed to bench/sasrec_speed.py's parser (sasrec part)")
    parser.add_argument("--sasrec-from", type=Path, default=None,
                        help="quote this bench/sasrec_speed.py result instead of re-running it (sasrec part)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "throughput.json")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.backbones, args.eval_users = 2, ["tiny-llama"], 100
    threads = set_threads(args.threads)
    for variant in ("prefix_cache_only", "now"):
        STEP_VARIANTS[variant]["item_prefix_cache_mb"] = args.cache_mb
    command = "python bench/throughput.py " + " ".join(sys.argv[1:])
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"benchmark": "throughput before/after (issue 14)", "machine": machine_info()})
    result.setdefault("parts", {})
    for part in args.parts:
        start = time.perf_counter()
        if part in ("step", "validation"):
            key = f"{part}_speedup"
            rows = [
                measure_step(backbone, args.repeats) if part == "step"
                else measure_validation(backbone, args.eval_users, args.repeats)
                for backbone in args.backbones
            ]
            for row in rows:
                row["command"] = command
            kept = [row for row in result["parts"].get(part, {}).get("rows", []) if row["backbone"] not in args.backbones]
            rows = kept + rows  # rows of other backbones from an earlier run are kept, each with its command
            payload: dict[str, Any] = {"rows": rows, key: min(row[key] for row in rows)}
        elif part == "recommend":
            payload = measure_recommend(args.backbones[0], max(3, args.repeats))
        elif args.sasrec_from is not None:  # a finished bench/sasrec_speed.py run, quoted with its command
            payload = json.loads(args.sasrec_from.read_text())
            payload["quoted_from"] = str(args.sasrec_from)
        else:
            import sasrec_speed

            payload = sasrec_speed.measure(sasrec_speed.parse_args(args.sasrec_args))
        if "quoted_from" in payload:
            payload["quoted_by"] = command
        else:
            payload.update({"command": command, "torch_threads": threads,
                            "wall_seconds": round(time.perf_counter() - start, 1)})
        result["parts"][part] = payload
        for key in ("step_speedup", "validation_speedup", "recommend_time_ratio",
                    "sasrec_epoch_vs_pmixer_bce", "sasrec_epoch_vs_pmixer_ce"):
            if key in payload:
                result[key] = payload[key]
        write_json(args.out, result)
        print(json.dumps({part: {k: v for k, v in payload.items() if not isinstance(v, (dict, list))}}), flush=True)


if __name__ == "__main__":
    main()
