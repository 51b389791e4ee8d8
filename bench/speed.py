"""Speed of LLM-SRec against its backbone's own limit, measured side by side in one process (interleaved repeats).

(a) training step: one full LLM-SRec step (forward of the user prompts and the B x C candidate prompts through the
    frozen backbone, heads, teacher, the three losses, backward, Adam step) divided by the bare backbone's
    forward + backward on the IDENTICAL token batch (same input_ids / attention_mask / position ids, the special
    ids looked up as the pad id exactly as the model does, ``inputs_embeds`` requiring grad so the backward runs
    through every layer, loss = sum of the hidden states at the output-token positions). Target <= 1.10.
(b) catalog encoding: items/s through ``model.encode_items`` (pre-tokenised item prompts, no grad) divided by the
    bare backbone's forward items/s (``llm(input_ids=..., attention_mask=...)``) on the same prompts. Target >= 0.90.
    Tokenisation (``processor.encode_items``, cached per item) is timed separately and not part of the ratio.
(c) peak memory: each workload runs in its own subprocess; the peak is the maximum RSS sampled every 0.5 ms by a
    thread during 3 repetitions, minus the RSS just before the first one (also ``ru_maxrss``). On a GPU the peak is
    ``torch.cuda.max_memory_allocated`` after a reset.

Both variants of a ratio run on the same model object (the bare backbone IS ``model.llm``), in the same mode, on
the same batch, alternating A/B then B/A in every repeat; the medians and the median of the per-repeat ratios are
reported. When a target is missed, a torch.profiler table of the ops that the LLM-SRec step adds (self CPU time,
LLM-SRec minus bare) and a component timing (heads, f_I + injection, teacher, losses) say where the time goes.

Usage:
    python bench/speed.py                                  # tiny-llama + minilm (+ llama-384x6), writes bench/results/speed.json
    python bench/speed.py --backbones minilm --repeats 9
    python bench/speed.py --quick                          # 3 repeats, tiny-llama only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, backbone_path, build_model, load_dataset, machine_info, set_threads, summary, write_json,
)

from llm_srec.data import LLMSRecCollator  # noqa: E402

TARGET_STEP_RATIO = 1.10
TARGET_ENCODE_RATIO = 0.90


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- the workloads
class Workloads:
    """The four timed callables on one model and one batch."""

    def __init__(self, model, data, batch_size: int, num_candidates: int, encode_batch: int, encode_items: int,
                 device: str | torch.device, label: str = "") -> None:
        self.device = torch.device(device)
        self.backbone = label
        self.model = model
        self.processor = self.model.processor
        collator = LLMSRecCollator(self.processor, sasrec_maxlen=self.model.sasrec.config.max_position_embeddings,
                                   num_negatives=num_candidates - 1, seed=0)
        train = data.splits["train"]
        self.batch = {key: value.to(self.device) for key, value in collator([train[i] for i in range(batch_size)]).items()}
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=1e-4,
                                          betas=(0.9, 0.98))
        ids = list(range(1, min(encode_items, data.num_items) + 1))
        self.item_ids = ids
        self.encode_batches = [
            {key: value.to(self.device) for key, value in self.processor.encode_items(ids[i:i + encode_batch]).items()}
            for i in range(0, len(ids), encode_batch)
        ]
        self.encode_batch = encode_batch
        self._special = self.model._special_token_ids()[:3]  # history, user, item
        self.trainable, self.total = self.model.get_nb_trainable_parameters()
        self.backbone_parameters = sum(p.numel() for p in self.model.llm.parameters())

    @classmethod
    def from_names(cls, dataset: str, backbone: str, batch_size: int, num_candidates: int, encode_batch: int,
                   encode_items: int, device: str) -> Workloads:
        data = load_dataset(dataset)
        model = build_model(data, backbone_path(backbone, data)).to(device)
        # both sides of (a) and (b) run one full padded forward per batch; bench/throughput.py measures the
        # item-prompt prefix cache and the length groups
        model.item_prefix_cache_mb = 0
        model.group_prompts_by_length = False
        return cls(model, data, batch_size, num_candidates, encode_batch, encode_items, device, backbone)

    def tokens(self) -> dict[str, int]:
        b = self.batch
        return {
            "user_prompts": int(b["input_ids"].shape[0]),
            "user_prompt_length": int(b["input_ids"].shape[1]),
            "candidate_prompts": int(b["candidate_input_ids"].shape[0]),
            "candidate_prompt_length": int(b["candidate_input_ids"].shape[1]),
            "real_tokens": int(b["attention_mask"].sum() + b["candidate_attention_mask"].sum()),
            "padded_tokens": int(b["input_ids"].numel() + b["candidate_input_ids"].numel()),
        }

    # (a) training step -----------------------------------------------------------------------------------
    def llm_srec_step(self) -> float:
        self.model.train()
        outputs = self.model(**self.batch)
        outputs.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(outputs.loss.detach())

    def _bare_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_token: int,
                      requires_grad: bool) -> torch.Tensor:
        embeds = self.model.llm.get_input_embeddings()(self.model.backbone_lookup_ids(input_ids))
        if requires_grad:
            embeds = embeds.detach().requires_grad_(True)
        kwargs: dict[str, Any] = {"inputs_embeds": embeds, "attention_mask": attention_mask}
        position_ids = self.model.backbone_position_ids(attention_mask)  # the model's own rule
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if self.model._backbone_takes["use_cache"]:
            kwargs["use_cache"] = False
        hidden = self.model.llm(**kwargs).last_hidden_state
        positions = ((input_ids == output_token) & attention_mask.bool()).int().argmax(-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]

    def bare_step(self) -> float:
        self.model.train()  # same mode as the LLM-SRec step (dropout of a BERT backbone included)
        b = self.batch
        users = self._bare_forward(b["input_ids"], b["attention_mask"], self._special[1], True)
        items = self._bare_forward(b["candidate_input_ids"], b["candidate_attention_mask"], self._special[2], True)
        loss = users.float().sum() + items.float().sum()
        loss.backward()
        return float(loss.detach())

    # (b) catalog encoding ----------------------------------------------------------------------------------
    @torch.no_grad()
    def llm_srec_encode(self) -> int:
        self.model.eval()
        for batch in self.encode_batches:
            self.model.encode_items(batch["input_ids"], batch["attention_mask"], batch["item_ids"])
        return len(self.item_ids)

    @torch.no_grad()
    def bare_encode(self) -> int:
        self.model.eval()
        for batch in self.encode_batches:
            mask = batch["attention_mask"]
            kwargs: dict[str, Any] = {"input_ids": self.model.backbone_lookup_ids(batch["input_ids"]),
                                      "attention_mask": mask}
            if self.model._backbone_takes["use_cache"]:
                kwargs["use_cache"] = False
            self.model.llm(**kwargs)
        return len(self.item_ids)

    def tokenize_items(self) -> int:
        self.processor._item_prompt_cache.clear() if hasattr(self.processor, "_item_prompt_cache") else None
        for start in range(0, len(self.item_ids), self.encode_batch):
            self.processor.encode_items(self.item_ids[start:start + self.encode_batch])
        return len(self.item_ids)

    # component timings (where the extra time of a step goes) -----------------------------------------------
    def components(self) -> dict[str, Any]:
        """Forward+backward of the pieces LLM-SRec adds around the backbone, on this batch's shapes."""
        model, b = self.model, self.batch
        model.train()
        d_llm = model.user_out_embedding.shape[0]
        n_users, n_items = b["input_ids"].shape[0], b["candidate_input_ids"].shape[0]
        slots = int((b["history_item_ids"] > 0).sum()) + n_items
        states_u = torch.randn(n_users, d_llm, device=self.device, requires_grad=True)
        states_i = torch.randn(n_items, d_llm, device=self.device, requires_grad=True)
        ids = torch.randint(1, model.sasrec.config.num_items + 1, (slots,), device=self.device)

        def heads():
            (model.user_head(states_u).sum() + model.item_head(states_i).sum()).backward()

        def projection():
            model.item_projection(model.sasrec.item_embeddings[ids]).sum().backward()

        def teacher():
            model.encode_teacher(b["sasrec_input_ids"]).sum().backward()

        def injection():  # embedding lookup + masked scatter of the f_I vectors + output-token insertion
            vectors = torch.randn(slots, d_llm, device=self.device, requires_grad=True)
            total = 0
            for input_ids, vec in ((b["input_ids"], vectors[: slots - n_items]), (b["candidate_input_ids"], vectors[slots - n_items:])):
                mask = input_ids == self._special[0]
                embeds = model.llm.get_input_embeddings()(self.model.backbone_lookup_ids(input_ids))
                embeds = embeds.masked_scatter(mask.unsqueeze(-1), vec[: int(mask.sum())])
                embeds = torch.where((input_ids == self._special[1]).unsqueeze(-1), model.user_out_embedding, embeds)
                total = total + embeds.sum()
            total.backward()

        results = {}
        for name, fn in (("heads f_user+f_item", heads), ("f_I projection", projection),
                         ("teacher + f_CF-user", teacher), ("embedding lookup + injection", injection)):
            fn()
            times = []
            for _ in range(5):
                sync(self.device)
                start = time.perf_counter()
                fn()
                sync(self.device)
                times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
            results[name] = summary(times)
        return results


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleave(pairs: dict[str, Any], repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Run the callables alternately (A B, then B A, ...) ``repeats`` times after ``warmup`` untimed rounds."""
    names = list(pairs)
    for _ in range(warmup):
        for name in names:
            pairs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(pairs[name], device))
    return times


def op_table(fn, device: torch.device, limit: int = 25) -> dict[str, float]:
    """Self CPU (and CUDA) milliseconds per op name for one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    table = {}
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1000.0
        if device.type == "cuda":
            ms = getattr(event, "self_device_time_total", 0) / 1000.0 or ms
        table[event.key] = table.get(event.key, 0.0) + ms
    return table


def where_time_goes(work: Workloads, repeats: int = 3) -> dict[str, Any]:
    """Ops whose self time is larger in the LLM-SRec step than in the bare step (median over a few profiles)."""
    llm, bare = [], []
    for _ in range(repeats):
        llm.append(op_table(work.llm_srec_step, work.device))
        bare.append(op_table(work.bare_step, work.device))
    keys = set().union(*llm, *bare)

    def med(tables, key):
        values = sorted(t.get(key, 0.0) for t in tables)
        return values[len(values) // 2]

    rows = [(key, med(llm, key), med(bare, key)) for key in keys]
    rows.sort(key=lambda row: row[1] - row[2], reverse=True)
    total_llm = sum(med(llm, key) for key in keys)
    total_bare = sum(med(bare, key) for key in keys)
    return {
        "profiled_total_ms": {"llm_srec_step": round(total_llm, 2), "bare_step": round(total_bare, 2)},
        "top_extra_ops_ms": [
            {"op": key, "llm_srec": round(a, 2), "bare": round(b, 2), "extra": round(a - b, 2)}
            for key, a, b in rows[:15]
        ],
    }


# ---------------------------------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess entry: peak memory of one workload (printed as one JSON line)."""
    work = Workloads.from_names(args.dataset, args.worker_backbone, args.batch_size, args.num_candidates,
                                args.encode_batch, args.encode_items, args.device)
    fn = {"llm_srec_step": work.llm_srec_step, "bare_step": work.bare_step,
          "llm_srec_encode": work.llm_srec_encode, "bare_encode": work.bare_encode}[args.worker_workload]
    import gc

    gc.collect()
    if work.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        print(json.dumps({"peak_bytes_over_baseline": torch.cuda.max_memory_allocated() - base,
                          "baseline_bytes": base, "method": "torch.cuda.max_memory_allocated - allocated before"}))
        return
    base_rss = _rss_bytes()
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = [base_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    for _ in range(3):
        fn()
    stop.set()
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "peak_bytes_over_baseline": peak[0] - base_rss,
        "baseline_rss_bytes": base_rss,
        "ru_maxrss_delta_bytes": maxrss - base_maxrss,
        "method": "max RSS sampled every 0.5 ms during 3 runs minus RSS before (subprocess)",
    }))


def measure_memory(args: argparse.Namespace, backbone: str) -> dict[str, Any]:
    results = {}
    for workload in ("bare_step", "llm_srec_step", "bare_encode", "llm_srec_encode"):
        command = [sys.executable, __file__, "--memory-worker", backbone, workload, "--dataset", args.dataset,
                   "--batch-size", str(args.batch_size), "--num-candidates", str(args.num_candidates),
                   "--encode-batch", str(args.encode_batch), "--encode-items", str(args.encode_items),
                   "--device", args.device, "--threads", str(torch.get_num_threads())]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            results[workload] = {"error": done.stderr[-2000:]}
            continue
        row = json.loads(lines[-1])
        row["peak_MiB_over_baseline"] = round(row["peak_bytes_over_baseline"] / 2**20, 1)
        results[workload] = row
    for kind in ("step", "encode"):
        a, b = results.get(f"llm_srec_{kind}", {}), results.get(f"bare_{kind}", {})
        if "peak_bytes_over_baseline" in a and b.get("peak_bytes_over_baseline"):
            results[f"{kind}_ratio"] = round(a["peak_bytes_over_baseline"] / b["peak_bytes_over_baseline"], 3)
    return results


# ------------------------------------------------------------------------------------------------------- main
def run_backbone(args: argparse.Namespace, backbone: str) -> dict[str, Any]:
    torch.manual_seed(0)
    work = Workloads.from_names(args.dataset, backbone, args.batch_size, args.num_candidates, args.encode_batch,
                                args.encode_items, args.device)
    row = measure(work, args.repeats, profile=args.profile)
    del work
    if not args.no_memory:
        row["peak_memory"] = measure_memory(args, backbone)
    return row


def measure(work: Workloads, repeats: int, profile: bool = False) -> dict[str, Any]:
    """Interleaved step and encode timings of one `Workloads` (plus profiles when a target is missed)."""
    row: dict[str, Any] = {
        "backbone": work.backbone,
        "backbone_parameters": work.backbone_parameters,
        "trainable_parameters": work.trainable,
        "batch": work.tokens(),
    }
    step = interleave({"llm_srec_step": work.llm_srec_step, "bare_step": work.bare_step}, repeats, work.device)
    ratios = [a / b for a, b in zip(step["llm_srec_step"], step["bare_step"])]
    row["train_step_seconds"] = {name: summary(values) for name, values in step.items()}
    row["train_step_ratio"] = {
        "ratio_of_medians": round(summary(step["llm_srec_step"])["median"] / summary(step["bare_step"])["median"], 3),
        "median_paired_ratio": round(summary(ratios)["median"], 3),
        "target": f"<= {TARGET_STEP_RATIO}",
    }
    row["train_step_ratio"]["met"] = row["train_step_ratio"]["median_paired_ratio"] <= TARGET_STEP_RATIO

    encode = interleave({"llm_srec_encode": work.llm_srec_encode, "bare_encode": work.bare_encode}, repeats,
                        work.device)
    items = len(work.item_ids)
    throughput = {name: [items / t for t in values] for name, values in encode.items()}
    enc_ratios = [a / b for a, b in zip(throughput["llm_srec_encode"], throughput["bare_encode"])]
    row["encode"] = {"items": items, "batch_size": work.encode_batch,
                     "items_per_second": {name: summary(values, 2) for name, values in throughput.items()}}
    row["encode_ratio"] = {
        "ratio_of_medians": round(summary(throughput["llm_srec_encode"])["median"]
                                  / summary(throughput["bare_encode"])["median"], 3),
        "median_paired_ratio": round(summary(enc_ratios)["median"], 3),
        "target": f">= {TARGET_ENCODE_RATIO}",
    }
    row["encode_ratio"]["met"] = row["encode_ratio"]["median_paired_ratio"] >= TARGET_ENCODE_RATIO
    tokenize = [timed(work.tokenize_items, work.device) for _ in range(3)]
    row["encode"]["tokenize_items_per_second_uncached"] = round(items / summary(tokenize)["median"], 1)

    if not row["train_step_ratio"]["met"] or profile:
        row["where_the_step_time_goes"] = where_time_goes(work)
        row["where_the_step_time_goes"]["components_fwd_bwd_seconds"] = work.components()
    if not row["encode_ratio"]["met"] or profile:
        llm = op_table(work.llm_srec_encode, work.device)
        bare = op_table(work.bare_encode, work.device)
        extra = sorted(((k, llm.get(k, 0) - bare.get(k, 0)) for k in set(llm) | set(bare)), key=lambda x: -x[1])
        row["where_the_encode_time_goes"] = {
            "profiled_total_ms": {"llm_srec": round(sum(llm.values()), 2), "bare": round(sum(bare.values()), 2)},
            "top_extra_ops_ms": [{"op": k, "extra": round(v, 2)} for k, v in extra[:12]],
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny-llama", "minilm", "llama-384x6"])
    parser.add_argument("--dataset", default="scientific")
    parser.add_argument("--batch-size", type=int, default=20, help="users per training step (paper: 20)")
    parser.add_argument("--num-candidates", type=int, default=4, help="target + negatives per user (code: 4)")
    parser.add_argument("--encode-batch", type=int, default=64)
    parser.add_argument("--encode-items", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true", help="profile even when the targets are met")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 repeats, tiny-llama, 128 items")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "speed.json")
    parser.add_argument("--memory-worker", nargs=2, metavar=("BACKBONE", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default $LLM_SREC_BENCH_THREADS or 1; 0 = torch's default)")
    args = parser.parse_args()
    set_threads(args.threads)
    if args.memory_worker:
        args.worker_backbone, args.worker_workload = args.memory_worker
        memory_worker(args)
        return
    if args.quick:
        args.repeats, args.backbones, args.encode_items = 3, ["tiny-llama"], 128
    result: dict[str, Any] = {
        "benchmark": "LLM-SRec speed against the bare backbone (interleaved, same batch)",
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "memory_worker"},
        "rows": [],
    }
    for backbone in args.backbones:
        started = time.perf_counter()
        row = run_backbone(args, backbone)
        row["bench_seconds"] = round(time.perf_counter() - started, 1)
        result["rows"].append(row)
        write_json(args.out, result)
        print(json.dumps({k: row[k] for k in ("backbone", "train_step_ratio", "encode_ratio")}), flush=True)
    result["machine_after"] = {"load_average_1m": round(os.getloadavg()[0], 2)}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
