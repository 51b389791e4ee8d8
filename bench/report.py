"""Render the markdown tables of BENCHMARKS.md from the JSON files in bench/results (or another folder).

Usage: python bench/report.py [--results bench/results]   (prints markdown to stdout)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SAMPLED = "sampled(1+99, seed=0)"
FULL = "full-catalog"
NAMES = {"llm-srec": "LLM-SRec", "no-distill": "ablation w/o L_Distill, L_Uniform",
         "distill-x128": "LLM-SRec, L_Distill weight 128"}


def load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "met" if value else "**missed**"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def speed_tables(result: dict[str, Any]) -> list[str]:
    lines = [f"Command: `{result['command']}`; torch threads {result['machine']['torch_threads']}; load average at "
             f"start {result['machine']['load_average_1m']}.", ""]
    lines += ["| backbone (params) | batch: prompts x padded length | LLM-SRec step s (median) | bare fwd+bwd s "
              "(median) | step ratio, median of paired (target <= 1.10) | LLM-SRec encode items/s | bare fwd items/s "
              "| encode ratio, median of paired (target >= 0.90) |",
              "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        b = row["batch"]
        steps = row["train_step_seconds"]
        enc = row["encode"]["items_per_second"]
        lines.append(
            f"| {row['backbone']} ({row['backbone_parameters']:,}) | {b['user_prompts']}x{b['user_prompt_length']} users"
            f" + {b['candidate_prompts']}x{b['candidate_prompt_length']} items ({b['real_tokens']:,} real tokens) | "
            f"{steps['llm_srec_step']['median']:.3f} | {steps['bare_step']['median']:.3f} | "
            f"{row['train_step_ratio']['median_paired_ratio']:.3f} ({fmt(row['train_step_ratio']['met'])}) | "
            f"{enc['llm_srec_encode']['median']:.1f} | {enc['bare_encode']['median']:.1f} | "
            f"{row['encode_ratio']['median_paired_ratio']:.3f} ({fmt(row['encode_ratio']['met'])}) |")
    lines += ["", "Peak memory (RSS increase over the process's RSS before the workload, 3 runs, separate subprocesses):",
              "", "| backbone | bare step MiB | LLM-SRec step MiB | ratio | bare encode MiB | LLM-SRec encode MiB | ratio |",
              "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        mem = row.get("peak_memory", {})

        def mib(key):
            return fmt(mem.get(key, {}).get("peak_MiB_over_baseline"), 1)

        lines.append(f"| {row['backbone']} | {mib('bare_step')} | {mib('llm_srec_step')} | {fmt(mem.get('step_ratio'), 2)}"
                     f" | {mib('bare_encode')} | {mib('llm_srec_encode')} | {fmt(mem.get('encode_ratio'), 2)} |")
    return lines


def distillation_cosine(log_row: dict[str, float], embedding_size: int = 128) -> float:
    """Mean cosine between f_user(h_U) and f_CF-user(O_u) on the logged training batches, implied by the code's
    L_Distill: the element-mean squared difference of two unit vectors of size d' is (2 - 2 cos) / d'."""
    return 1 - embedding_size / 2 * log_row["distillation_loss"]


def metrics_row(label: str, metrics: dict[str, Any]) -> str:
    s, f = metrics[SAMPLED], metrics[FULL]
    return (f"| {label} | {s['NDCG@10']:.4f} | {s['HR@10']:.4f} | {s['NDCG@20']:.4f} | {s['HR@20']:.4f} | "
            f"{f['NDCG@10']:.4f} | {f['HR@10']:.4f} |")


def accuracy_tables(result: dict[str, Any]) -> list[str]:
    ev = result["evaluation"]
    commands = result.get("commands") or [result["command"]]
    lines = ["Commands (their runs merge into one file): " + "; ".join(f"`{c}`" for c in commands) + ".",
             f"Test split, {ev['subset']} (of {ev['of_users']}).", ""]
    header = (f"| model | NDCG@10 {SAMPLED} | HR@10 {SAMPLED} | NDCG@20 {SAMPLED} | HR@20 {SAMPLED} | "
              f"NDCG@10 {FULL} | HR@10 {FULL} |")
    lines += [header, "|---|---|---|---|---|---|---|"]
    if "teacher" in result:
        lines.append(metrics_row("SASRec teacher", result["teacher"]["test"]))
    for key, run in result.get("runs", {}).items():
        if run["training_histories"] != "original":
            continue
        label = f"{NAMES[run['variant']]} — {run['backbone']} ({run['steps']} steps)"
        lines.append(metrics_row(label, run["test"]))
    if "teacher" in result and "test_all_users" in result["teacher"]:
        lines.append(metrics_row(f"SASRec teacher, all {result['teacher']['test_all_users'][SAMPLED]['num_users']:.0f} "
                                 "test users", result["teacher"]["test_all_users"]))
    lines += ["", "Shuffled-training probe (trained on once-shuffled training histories, ranked on the original test "
              "histories; change = (shuffled - original) / original):", "",
              f"| model | NDCG@10 {SAMPLED} original | shuffled | change | NDCG@10 {FULL} original | shuffled | change |",
              "|---|---|---|---|---|---|---|"]
    summary = result.get("summary", {})
    if "sasrec_shuffled_training" in summary:
        c = summary["sasrec_shuffled_training"]
        lines.append(f"| SASRec | {c[SAMPLED]['NDCG@10']['original']:.4f} | {c[SAMPLED]['NDCG@10']['shuffled']:.4f} | "
                     f"{pct(c[SAMPLED]['NDCG@10'].get('change'))} | {c[FULL]['NDCG@10']['original']:.4f} | "
                     f"{c[FULL]['NDCG@10']['shuffled']:.4f} | {pct(c[FULL]['NDCG@10'].get('change'))} |")
    for backbone, row in summary.items():
        for variant, c in (row.get("shuffled_training") or {}).items() if isinstance(row, dict) else []:
            lines.append(f"| {NAMES[variant]} — {backbone} | {c[SAMPLED]['NDCG@10']['original']:.4f} | "
                         f"{c[SAMPLED]['NDCG@10']['shuffled']:.4f} | {pct(c[SAMPLED]['NDCG@10'].get('change'))} | "
                         f"{c[FULL]['NDCG@10']['original']:.4f} | {c[FULL]['NDCG@10']['shuffled']:.4f} | "
                         f"{pct(c[FULL]['NDCG@10'].get('change'))} |")
    lines += ["", "| backbone | target | value | verdict |", "|---|---|---|---|"]
    for backbone, row in summary.items():
        if not isinstance(row, dict) or backbone == "sasrec_shuffled_training":
            continue
        if "llm_srec_vs_teacher" in row:
            r = row["llm_srec_vs_teacher"]
            lines.append(f"| {backbone} | LLM-SRec >= +5% over teacher, NDCG@10 {SAMPLED} | {r['llm_srec']:.4f} vs "
                         f"{r['teacher']:.4f} ({pct(r['relative_gain'])}) | {fmt(r['met'])} |")
        if "llm_srec_vs_ablation" in row:
            r = row["llm_srec_vs_ablation"]
            lines.append(f"| {backbone} | LLM-SRec > ablation, NDCG@10 {SAMPLED} | {r['llm_srec']:.4f} vs "
                         f"{r['ablation']:.4f} ({pct(r['relative_gain'])}) | {fmt(r['met'])} |")
        if "order_sensitivity" in row:
            r = row["order_sensitivity"]
            lines.append(f"| {backbone} | LLM-SRec more order-sensitive than ablation (shuffled-training change, "
                         f"NDCG@10 {SAMPLED}) | {pct(r['llm_srec'])} vs {pct(r['ablation'])} | {fmt(r['met'])} |")
    curves = {key: run for key, run in result.get("runs", {}).items() if run.get("learning_curve")}
    if curves:
        lines += ["", f"| run (learning curve) | step | NDCG@10 {SAMPLED} | HR@10 {SAMPLED} | NDCG@10 {FULL} |",
                  "|---|---|---|---|---|"]
        for key, run in curves.items():
            for row in [*run["learning_curve"], {"step": run["steps"], "test": run["test"]}]:
                s, f = row["test"][SAMPLED], row["test"][FULL]
                lines.append(f"| {key} | {row['step']} | {s['NDCG@10']:.4f} | {s['HR@10']:.4f} | {f['NDCG@10']:.4f} |")
    lines += ["", "| run | steps | s/step | train s | eval s | last logged losses | cos(f_user, f_CF-user), "
              "first → last log |", "|---|---|---|---|---|---|---|"]
    for key, run in result.get("runs", {}).items():
        last = run["loss_log"][-1] if run["loss_log"] else {}
        losses = ", ".join(f"{k}={v:.3f}" for k, v in last.items() if k != "step")
        cosines = [distillation_cosine(row) for row in run["loss_log"] if "distillation_loss" in row]
        alignment = f"{cosines[0]:.3f} → {cosines[-1]:.3f}" if cosines else "—"
        lines.append(f"| {key} | {run['steps']} | {run['seconds_per_step']:.2f} | {run['train_seconds']:.0f} | "
                     f"{run['eval_seconds']:.0f} | {losses} | {alignment} |")
    return lines


def sasrec_table(result: dict[str, Any]) -> list[str]:
    label = result["protocol"]
    lines = [f"Command: `{result['command']}`.", "",
             f"| epoch | valid NDCG@10 {label} | test NDCG@10 {label} | test HR@10 {label} | test NDCG@10 full-catalog "
             f"| test HR@10 full-catalog |", "|---|---|---|---|---|---|"]
    for row in result["trajectory"]:
        v, t, f = row["validation"][label], row["test"][label], row["test"]["full-catalog"]
        lines.append(f"| {row['epoch']} | {v['NDCG@10']:.4f} | {t['NDCG@10']:.4f} | {t['HR@10']:.4f} | "
                     f"{f['NDCG@10']:.4f} | {f['HR@10']:.4f} |")
    return lines


def recipe_table(result: dict[str, Any]) -> list[str]:
    """One row per variant of a `bench/recipes.py` / `bench/oracle.py` file: mean ± std over seeds, and x teacher."""
    teacher = result["teacher"]["test"]
    commands = "; ".join(f"`{command}`" for command in result.get("commands", [result["command"]]))
    lines = [f"Commands: {commands}. Test users: {result['evaluation']['users']}; selection: "
             f"{result['evaluation']['selection']}.", "",
             f"| model | seeds | {SAMPLED} NDCG@10 | HR@10 | {FULL} NDCG@10 | HR@10 | shuffled-training change |",
             "|---|---|---|---|---|---|---|",
             f"| SASRec teacher | — | {teacher[SAMPLED]['NDCG@10']:.4f} | {teacher[SAMPLED]['HR@10']:.4f} | "
             f"{teacher[FULL]['NDCG@10']:.4f} | {teacher[FULL]['HR@10']:.4f} | — |"]

    def cell(stats: dict[str, float]) -> str:
        return f"{stats['mean']:.4f} ± {stats['std']:.4f} ({stats['vs_teacher']:.2f}x)"

    for name, row in result.get("summary", {}).items():
        seeds = row[f"{SAMPLED}/NDCG@10"]["n"]
        change = row.get("shuffled_training_change")
        lines.append(f"| {name} | {seeds} | {cell(row[f'{SAMPLED}/NDCG@10'])} | {cell(row[f'{SAMPLED}/HR@10'])} | "
                     f"{cell(row[f'{FULL}/NDCG@10'])} | {cell(row[f'{FULL}/HR@10'])} | {pct(change)} |")
    return lines


def run_cost_table(result: dict[str, Any]) -> list[str]:
    """Per run of a `bench/recipes.py` file that recorded its costs: steps, seconds per step, validation and test
    seconds, peak memory, and the load the machine was under."""
    rows = [(name, seed, run) for name, runs in result.get("runs_by_variant", {}).items()
            for seed, run in runs.items() if "seconds_per_step" in run]
    if not rows:
        return []
    lines = ["| run | seed | steps | s/step | validations (s each) | test (s) | peak RSS (MiB) | load (1 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, seed, run in rows:
        validations = ", ".join(f"{value:.0f}" for value in run["validation_seconds"]) or "—"
        load = run.get("machine", {}).get("load_average_1m")
        lines.append(f"| {name} | {seed} | {run['steps']} | {run['seconds_per_step']:.1f} | {validations} | "
                     f"{run['test_seconds']:.0f} | {run['peak_rss_mb']:,.0f} | {fmt(load, 2)} |")
    return lines


def throughput_tables(result: dict[str, Any]) -> list[str]:
    """`bench/throughput.py`'s parts: before/after medians and the ratios, each measured side by side in one run."""
    parts = result["parts"]
    lines = []
    if "step" in parts:
        lines += ["**Training step** (20 Scientific users + 80 candidate prompts: forward, losses, backward, Adam; "
                  "median seconds, 1 thread)", "",
                  "| backbone | before | prefix cache only | length groups only | now | speedup (median of pairs) | "
                  "bare, same work as now | now ÷ bare | loss before / now | cold step (fwd+bwd) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in parts["step"]["rows"]:
            t = {name: value["median"] for name, value in row["seconds"].items()}
            lines.append(
                f"| {row['backbone']} | {t['before']:.3f} | {t['prefix_cache_only']:.3f} | {t['length_groups_only']:.3f}"
                f" | {t['now']:.3f} | **{row['step_speedup']:.2f}x** (cache {row['step_speedup_prefix_cache_only']:.2f}x"
                f", groups {row['step_speedup_length_groups_only']:.2f}x) | {t['bare_cached']:.3f} | "
                f"{row['step_ratio_vs_bare_cached']:.3f} | {row['loss']['before']:.6f} / "
                f"{row['loss']['now_warm_cache']:.6f} | {row['cold_cache_step_seconds_forward_backward']:.3f} |")
        lines.append("")
    if "validation" in parts:
        lines += ["**Validation** (one `RankingEvaluator` pass: the whole 4,385-item catalog through the item side, "
                  "then the users, both protocols; median seconds)", "",
                  "| backbone | users | before | now, cold cache | now, warm cache | speedup warm / cold | "
                  "prefix cache for the catalog | max metric difference |", "|---|---|---|---|---|---|---|---|"]
        for row in parts["validation"]["rows"]:
            t = {name: value["median"] for name, value in row["seconds"].items()}
            lines.append(
                f"| {row['backbone']} | {row['users']} | {t['before']:.2f} | {row['cold_now_seconds']:.2f} | "
                f"{t['now_warm']:.2f} | **{row['validation_speedup']:.2f}x** / {row['validation_speedup_cold']:.2f}x | "
                f"{row['prefix_cache_mib_for_the_catalog']:.0f} MiB (bound {row.get('item_prefix_cache_mb', 1024)}) | "
                f"{row['max_abs_metric_difference']:.1e} |")
        lines.append("")
    if "recommend" in parts:
        row = parts["recommend"]
        t = {name: value["median"] for name, value in row["seconds_to_first_answer_excluding_backbone_load"].items()}
        lines += [f"**`recommend` in a fresh process** ({row['backbone']}, {row['catalog_items']:,} items; "
                  "`from_pretrained` with the backbone passed in, plus the first answer; median of "
                  f"{row['seconds_to_first_answer_excluding_backbone_load']['now']['n']} processes each): "
                  f"{t['before']:.3f} s without a saved index, {t['now']:.3f} s with it: "
                  f"**ratio {row['recommend_time_ratio']:.4f}**; same top items: {row['same_top_items']}.", ""]
    if "sasrec" in parts:
        row = parts["sasrec"]
        bce, ce = row["losses"]["bce"], row["losses"]["ce"]
        lines += ["**SASRec on ML-1M vs pmixer/SASRec.pytorch** (pmixer's settings, same batches, median seconds "
                  f"per step; `{row['command']}`)", "",
                  "| loss | package | pmixer re-implementation | epoch ratio (steps x median) | one real epoch each |",
                  "|---|---|---|---|---|"]
        for name, loss in (("BCE", bce), ("cross-entropy", ce)):
            epoch = loss.get("one_real_epoch_seconds", {})
            real = (f"{epoch['package']:.1f} s vs {epoch['pmixer']:.1f} s" if {"package", "pmixer"} <= set(epoch)
                    else "—")
            lines.append(f"| {name} | {loss['package_step_seconds']['median']:.3f} | "
                         f"{loss['pmixer_step_seconds']['median']:.3f} | **{loss['ratio_of_median_step_seconds']:.3f}** |"
                         f" {real} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    out: list[str] = []
    speed = load(args.results, "speed.json")
    if speed:
        out += ["### Speed (CPU)", ""] + speed_tables(speed) + [""]
    for path in sorted(p for p in args.results.glob("accuracy_*.json") if not p.stem.endswith("_quick")):
        acc = load(args.results, path.name)
        out += [f"### Accuracy: {acc['data']['dataset']} (`{path.name}`)", ""] + accuracy_tables(acc) + [""]
    for path in sorted(args.results.glob("*.json")):
        result = load(args.results, path.name)
        if isinstance(result, dict) and "runs_by_variant" in result and not path.stem.endswith("_quick"):
            out += [f"### Recipes: {result['benchmark']}, {result['data']['dataset']} (`{path.name}`)", ""]
            out += recipe_table(result) + [""]
            costs = run_cost_table(result)
            if costs:
                out += costs + [""]
    throughput = load(args.results, "throughput.json")
    if throughput:
        out += ["### Throughput (`throughput.json`)", ""] + throughput_tables(throughput)
    for path in sorted(args.results.glob("sasrec_ml1m*.json")):
        out += [f"### SASRec on ML-1M (`{path.name}`)", ""] + sasrec_table(load(args.results, path.name)) + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
