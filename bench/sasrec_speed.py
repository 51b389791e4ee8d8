"""SASRec training speed: the package's `SASRecModel` against pmixer/SASRec.pytorch on ML-1M, step for step.

Reference: https://github.com/pmixer/SASRec.pytorch (Apache-2.0), the PyTorch SASRec that LLM-SRec builds on. Its model
and training step are re-implemented below (`PmixerSASRec`, `pmixer_step`) from the repository's public description,
not copied: item embedding * sqrt(d) + learned positional embedding, embedding dropout, padded positions zeroed
("timeline mask"); per block ``Q = LayerNorm(seqs)``, ``torch.nn.MultiheadAttention(Q, seqs, seqs, attn_mask=causal
bool mask)`` in the sequence-first layout (B, L, d) -> (L, B, d), ``seqs = Q + mha``, LayerNorm, a point-wise
feed-forward of two kernel-1 Conv1d with dropout, ReLU and a residual, timeline mask; a final LayerNorm. Training:
xavier-normal initialisation of every parameter that takes it, BCE on ``(log_feats * pos_embs).sum(-1)`` /
``(log_feats * neg_embs).sum(-1)`` at the positions where ``pos != 0``, plus ``l2_emb * ||item_emb||`` with pmixer's
default ``l2_emb = 0``, Adam(lr 1e-3, betas (0.9, 0.98)).

pmixer has no cross-entropy loss. ``pmixer-ce`` is the same model with the full-softmax CE a user would add to it:
``F.cross_entropy(log_feats[pos != 0] @ item_emb.weight.T, pos[pos != 0])`` (logits only at non-padding positions,
the padding item's column left in as one more class). The package's ``loss_type="ce"`` computes the same softmax
with column 0 excluded.

Both implementations train on identical batches (the package's `SASRecCollator` on the ML-1M train split: input ids,
positives and one negative per position, left-padded to maxlen 200, batch 128) with pmixer's ML-1M settings (d 50,
2 blocks, 1 head, dropout 0.2). One step = forward + backward + Adam step. Steps are timed interleaved: in every
repeat the package and the reference run the same batch, in the order A B in even repeats and B A in odd ones. The
reported ratio is package / pmixer under the same loss; an epoch estimate is ``ceil(6040 / 128)`` steps times the
median step time.

Usage:
    python bench/sasrec_speed.py            # writes bench/results/sasrec_speed.json (about 5 minutes)
    python bench/sasrec_speed.py --quick    # smoke run (~30 s): /tmp/llm_srec_bench/sasrec_speed_quick.json
    python bench/sasrec_speed.py --compare-with bench/results/sasrec_speed_before.json  # quote an earlier run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DATA_DIR, RESULTS_DIR, WORK_DIR, add_pmixer_arguments, load_dataset, machine_info, set_threads, summary,
    write_json,
)

from llm_srec.data import SASRecCollator  # noqa: E402
from llm_srec.modeling import SASRecConfig, SASRecModel  # noqa: E402

Batch = dict[str, torch.Tensor]


class PmixerPointWiseFeedForward(nn.Module):
    """pmixer's feed-forward: Conv1d(k=1) -> dropout -> ReLU -> Conv1d(k=1) -> dropout, plus the input."""

    def __init__(self, hidden_units: int, dropout_rate: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(hidden_units, hidden_units, kernel_size=1)
        self.dropout1 = nn.Dropout(dropout_rate)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(hidden_units, hidden_units, kernel_size=1)
        self.dropout2 = nn.Dropout(dropout_rate)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.dropout2(self.conv2(self.relu(self.dropout1(self.conv1(inputs.transpose(-1, -2))))))
        return outputs.transpose(-1, -2) + inputs


class PmixerSASRec(nn.Module):
    """pmixer/SASRec.pytorch's SASRec (see the module docstring)."""

    def __init__(self, num_items: int, hidden_units: int, num_blocks: int, num_heads: int, maxlen: int,
                 dropout_rate: float) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(num_items + 1, hidden_units, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, hidden_units)
        self.emb_dropout = nn.Dropout(dropout_rate)
        self.attention_layernorms = nn.ModuleList()
        self.attention_layers = nn.ModuleList()
        self.forward_layernorms = nn.ModuleList()
        self.forward_layers = nn.ModuleList()
        for _ in range(num_blocks):
            self.attention_layernorms.append(nn.LayerNorm(hidden_units, eps=1e-8))
            self.attention_layers.append(nn.MultiheadAttention(hidden_units, num_heads, dropout_rate))
            self.forward_layernorms.append(nn.LayerNorm(hidden_units, eps=1e-8))
            self.forward_layers.append(PmixerPointWiseFeedForward(hidden_units, dropout_rate))
        self.last_layernorm = nn.LayerNorm(hidden_units, eps=1e-8)
        for parameter in self.parameters():  # pmixer's main.py: xavier-normal wherever it applies
            if parameter.dim() >= 2:
                nn.init.xavier_normal_(parameter.data)

    def log2feats(self, log_seqs: torch.Tensor) -> torch.Tensor:
        seqs = self.item_emb(log_seqs) * self.item_emb.embedding_dim**0.5
        positions = torch.arange(log_seqs.shape[1], device=log_seqs.device).expand_as(log_seqs)
        seqs = self.emb_dropout(seqs + self.pos_emb(positions))
        timeline_mask = (log_seqs == 0).unsqueeze(-1)
        seqs = seqs * ~timeline_mask
        length = seqs.shape[1]
        attention_mask = ~torch.tril(torch.ones((length, length), dtype=torch.bool, device=log_seqs.device))
        for i in range(len(self.attention_layers)):
            seqs = torch.transpose(seqs, 0, 1)
            queries = self.attention_layernorms[i](seqs)
            mha_outputs, _ = self.attention_layers[i](queries, seqs, seqs, attn_mask=attention_mask)
            seqs = torch.transpose(queries + mha_outputs, 0, 1)
            seqs = self.forward_layers[i](self.forward_layernorms[i](seqs))
            seqs = seqs * ~timeline_mask
        return self.last_layernorm(seqs)

    def forward(self, log_seqs: torch.Tensor, pos_seqs: torch.Tensor, neg_seqs: torch.Tensor):
        log_feats = self.log2feats(log_seqs)
        pos_logits = (log_feats * self.item_emb(pos_seqs)).sum(dim=-1)
        neg_logits = (log_feats * self.item_emb(neg_seqs)).sum(dim=-1)
        return pos_logits, neg_logits


def pmixer_bce_loss(model: PmixerSASRec, batch: Batch, l2_emb: float = 0.0) -> torch.Tensor:
    """pmixer's training loss: BCE on the positive and the negative logit at every non-padding position."""
    pos, neg = batch["positive_ids"], batch["negative_ids"]
    pos_logits, neg_logits = model(batch["input_ids"], pos, neg)
    indices = torch.where(pos != 0)
    criterion = nn.BCEWithLogitsLoss()
    loss = criterion(pos_logits[indices], torch.ones_like(pos_logits)[indices])
    loss = loss + criterion(neg_logits[indices], torch.zeros_like(neg_logits)[indices])
    for parameter in model.item_emb.parameters():
        loss = loss + l2_emb * torch.norm(parameter)
    return loss


def pmixer_ce_loss(model: PmixerSASRec, batch: Batch) -> torch.Tensor:
    """Full-softmax CE added to pmixer naively: logits over the whole item table at the non-padding positions."""
    pos = batch["positive_ids"]
    log_feats = model.log2feats(batch["input_ids"])
    indices = torch.where(pos != 0)
    return F.cross_entropy(log_feats[indices] @ model.item_emb.weight.t(), pos[indices])


def package_loss(model: SASRecModel, batch: Batch) -> torch.Tensor:
    return model(**batch).loss


def build_batches(data, maxlen: int, batch_size: int, num_batches: int | None, seed: int) -> list[Batch]:
    """One epoch (or its first ``num_batches``) of shuffled training users, collated by `SASRecCollator`."""
    rows = data.splits["train"]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    collator = SASRecCollator(data.num_items, maxlen=maxlen, seed=seed)
    starts = list(range(0, len(order), batch_size))[:num_batches]
    return [collator([rows[i] for i in order[start : start + batch_size]]) for start in starts]


class Runner:
    """A model, its Adam optimizer and its loss: ``step(batch)`` runs one training step and returns its seconds."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], lr: float) -> None:
        self.model = model.train()
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))

    def step(self, batch: Batch) -> float:
        start = time.perf_counter()
        loss = self.loss_fn(self.model, batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def build_runners(args: argparse.Namespace, num_items: int, loss: str) -> tuple[Runner, Runner]:
    """(package, pmixer) runners for one loss, each seeded the same way."""
    torch.manual_seed(args.seed)
    config = SASRecConfig(
        num_items=num_items, hidden_size=args.hidden, num_hidden_layers=args.blocks, num_attention_heads=args.heads,
        max_position_embeddings=args.maxlen, hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout, loss_type=loss,
    )
    package = Runner(SASRecModel(config), package_loss, args.lr)
    torch.manual_seed(args.seed)
    reference = PmixerSASRec(num_items, args.hidden, args.blocks, args.heads, args.maxlen, args.dropout)
    return package, Runner(reference, pmixer_bce_loss if loss == "bce" else pmixer_ce_loss, args.lr)


def compare(package: Runner, reference: Runner, batches: list[Batch], warmup: int, repeats: int) -> dict[str, Any]:
    """Interleaved per-step timings (A B, then B A, ...) on the same batches, after ``warmup`` untimed pairs."""
    for i in range(warmup):
        package.step(batches[i % len(batches)])
        reference.step(batches[i % len(batches)])
    times: dict[str, list[float]] = {"package": [], "pmixer": []}
    for i in range(repeats):
        batch = batches[(warmup + i) % len(batches)]
        order = (("package", package), ("pmixer", reference))
        for name, runner in order if i % 2 == 0 else order[::-1]:
            times[name].append(runner.step(batch))
    ratios = [a / b for a, b in zip(times["package"], times["pmixer"])]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "package_step_seconds": summary(times["package"]),
        "pmixer_step_seconds": summary(times["pmixer"]),
        "median_of_per_pair_ratios": round(statistics.median(ratios), 4),
        "ratio_of_median_step_seconds": round(medians["package"] / medians["pmixer"], 4),
    }


def time_epoch(runner: Runner, batches: list[Batch]) -> float:
    start = time.perf_counter()
    for batch in batches:
        runner.step(batch)
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison for both losses and return the result dictionary (see the module docstring)."""
    threads = set_threads(args.threads)
    data = load_dataset("ml-1m", args.data_dir)
    steps_per_epoch = math.ceil(len(data.splits["train"]) / args.batch_size)
    started = time.perf_counter()
    batches = build_batches(data, args.maxlen, args.batch_size, None if args.epoch else args.batches, args.seed)
    result: dict[str, Any] = {
        "benchmark": "SASRec training step time on ML-1M: llm_srec SASRecModel vs pmixer/SASRec.pytorch",
        "reference": "https://github.com/pmixer/SASRec.pytorch (re-implemented in bench/sasrec_speed.py)",
        "definition": "sasrec_epoch_vs_pmixer_<loss> = package epoch time / pmixer epoch time under the same loss, "
                      "the epoch estimated as steps_per_epoch x median step seconds (interleaved, same batches); "
                      "<1 means the package is faster",
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "settings": {
            **{key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "torch_threads": threads, "steps_per_epoch": steps_per_epoch, "optimizer": "Adam(betas=(0.9, 0.98))",
        },
        "data_seconds": round(time.perf_counter() - started, 2),
        "losses": {},
    }
    timed = batches[: args.batches]
    for loss in args.losses:
        package, reference = build_runners(args, data.num_items, loss)
        row = compare(package, reference, timed, args.warmup, args.repeats)
        for name in ("package", "pmixer"):
            row[f"{name}_epoch_seconds_estimate"] = round(steps_per_epoch * row[f"{name}_step_seconds"]["median"], 2)
        if args.epoch:
            epochs = {"package": time_epoch(package, batches), "pmixer": time_epoch(reference, batches)}
            row["one_real_epoch_seconds"] = {name: round(value, 2) for name, value in epochs.items()}
            row["one_real_epoch_ratio"] = round(epochs["package"] / epochs["pmixer"], 4)
        result["losses"][loss] = row
        result[f"sasrec_epoch_vs_pmixer_{loss}"] = row["ratio_of_median_step_seconds"]
        print(f"{loss}: package {row['package_step_seconds']['median']:.4f} s/step, pmixer "
              f"{row['pmixer_step_seconds']['median']:.4f} s/step; package/pmixer ratio of medians "
              f"{row['ratio_of_median_step_seconds']:.3f}, median per-pair ratio {row['median_of_per_pair_ratios']:.3f}"
              + (f", one real epoch ratio {row['one_real_epoch_ratio']:.3f}" if args.epoch else ""), flush=True)
    if {"bce", "ce"} <= set(result["losses"]):
        ce, bce = result["losses"]["ce"], result["losses"]["bce"]
        result["package_ce_vs_pmixer_bce_epoch"] = round(
            ce["package_step_seconds"]["median"] / bce["pmixer_step_seconds"]["median"], 4
        )
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def earlier_run(path: Path) -> dict[str, Any]:
    """The headline ratios and median step seconds of another run's result file, marked as such."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    return {
        "note": f"another run, not this one: {path.name}" + (f" ({earlier['note']})" if "note" in earlier else ""),
        "command": earlier.get("command"),
        **{key: value for key, value in earlier.items() if key.startswith(("sasrec_epoch_vs_", "package_ce_vs_"))},
        "median_step_seconds": {
            loss: {name: row[f"{name}_step_seconds"]["median"] for name in ("package", "pmixer")}
            for loss, row in earlier.get("losses", {}).items()
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR / "ml-1m")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/sasrec_speed.json ($LLM_SREC_BENCH_WORK/sasrec_speed_quick.json "
                             "with --quick)")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="result file of an earlier run (e.g. before a code change) to quote next to this one")
    parser.add_argument("--losses", nargs="+", choices=("bce", "ce"), default=["bce", "ce"])
    parser.add_argument("--repeats", type=int, default=60, help="timed step pairs per loss")
    parser.add_argument("--warmup", type=int, default=5, help="untimed step pairs per loss")
    parser.add_argument("--batches", type=int, default=47, help="distinct batches cycled through by the timed steps")
    parser.add_argument("--epoch", action=argparse.BooleanOptionalAction, default=True,
                        help="also time one real epoch of each implementation (not interleaved)")
    add_pmixer_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 timed pairs per loss, no real epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.batches, args.epoch = 8, 2, 10, False
    if args.out is None:
        args.out = WORK_DIR / "sasrec_speed_quick.json" if args.quick else RESULTS_DIR / "sasrec_speed.json"
    return args


def main() -> None:
    args = parse_args()
    result = measure(args)
    if args.compare_with is not None:
        result["earlier_run"] = earlier_run(args.compare_with)
    write_json(args.out, result)
    print({key: value for key, value in result.items() if key.startswith("sasrec_epoch_vs_pmixer")})


if __name__ == "__main__":
    main()
