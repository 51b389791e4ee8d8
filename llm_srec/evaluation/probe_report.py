"""Markdown report of a probe result (the `run_probes` / ``probe.json`` dict), laid out like the paper's tables.

Why a report next to probe.json: the model card shows the raw numbers, while a reader comparing with the paper needs
them as the paper prints them ("0.3388 / 0.3224 (−4.84%)"), with the protocol named on every table and the method
(what moved, which seed, which thresholds) stated next to the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .probe_plots import BREAKDOWN_FILES, SCATTER_FILE, SIMILARITY_FILE
from .probes import (
    COLD,
    NON_TRANSITION,
    REPRESENTATION_SIMILARITY,
    SETUP,
    SHUFFLED_INFERENCE,
    SHUFFLED_TRAINING,
    TRANSITION,
    TRANSITION_BREAKDOWN,
    WARM,
    WARM_COLD_BREAKDOWN,
    WARM_COLD_FRACTION,
)

_GROUP_SIZES = {
    TRANSITION: "transition_users", NON_TRANSITION: "non_transition_users", WARM: "warm_target_users",
    COLD: "cold_target_users",
}


def format_change(ratio: float | None) -> str:
    """A change ratio as the paper prints it: ``(−4.84%)``, ``(+2.71%)``; ``(n/a)`` when undefined."""
    if ratio is None:
        return "(n/a)"
    return f"({ratio:+.2%})".replace("-", "−")


def format_cell(cell: Mapping[str, float]) -> str:
    """``original / shuffled (change)`` with 4 decimals, e.g. ``0.3388 / 0.3224 (−4.84%)``."""
    return f"{cell['original']:.4f} / {cell['shuffled']:.4f} {format_change(cell.get('change'))}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]


def _protocols(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(protocol for comparison in comparisons for protocol in comparison))


def _metrics(comparisons: Sequence[Mapping[str, Any]], protocol: str) -> list[str]:
    """The metrics of a protocol in the paper's column order: NDCG@K before HR@K, each by K."""
    names = dict.fromkeys(name for comparison in comparisons for name in comparison.get(protocol, {}))
    def order(name: str) -> tuple[bool, int, str]:
        cutoff = name.rpartition("@")[2]
        return not name.startswith("NDCG"), int(cutoff) if cutoff.isdigit() else 0, name

    return sorted(names, key=order)


def _comparison_tables(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One table per protocol: a row per model, a column per metric, cells ``original / shuffled (change)``."""
    lines: list[str] = []
    for protocol in _protocols(list(results.values())):
        metrics = _metrics(list(results.values()), protocol)
        rows = [
            [label, *(format_cell(comparison[protocol][m]) if m in comparison.get(protocol, {}) else "–"
                      for m in metrics)]
            for label, comparison in results.items()
        ]
        lines += ["", f"Protocol: `{protocol}`", "", *_table(["Model", *metrics], rows)]
    return lines


def _breakdown_tables(results: Mapping[str, Mapping[str, Any]], setup: Mapping[str, Any]) -> list[str]:
    """One table per protocol: a row per (model, group), a column per metric."""
    lines: list[str] = []
    comparisons = [comparison for by_group in results.values() for comparison in by_group.values()]
    for protocol in _protocols(comparisons):
        metrics = _metrics(comparisons, protocol)
        rows = [
            [label, f"{group} ({setup.get(_GROUP_SIZES.get(group, ''), '?')} users)",
             *(format_cell(comparison[protocol][m]) if m in comparison.get(protocol, {}) else "–" for m in metrics)]
            for label, by_group in results.items()
            for group, comparison in by_group.items()
        ]
        lines += ["", f"Protocol: `{protocol}`", "", *_table(["Model", "Group", *metrics], rows)]
    return lines


def render_report(probe: Mapping[str, Any], figures: Sequence[str | Path] = ()) -> str:
    """The report as Markdown; ``figures`` are image paths relative to the report (from `plot_probe`)."""
    setup = probe.get(SETUP, {})
    seed = setup.get("shuffle_seed", "?")
    figure_names = {Path(figure).name for figure in figures}
    lines = [
        "# Sequence-understanding probes",
        "",
        f"Dataset: {setup.get('dataset') or 'unnamed'} · split: {setup.get('split', 'test')} · "
        f"{setup.get('users', '?')} users · shuffle seed {seed} · protocols: "
        + ", ".join(f"`{protocol}`" for protocol in setup.get("protocols", [])),
        "",
        "Cells read **Original / Shuffle (Change)** with Change = (Shuffle − Original) / Original, as in the paper's "
        "Tables 3, 8 and 12. A model that uses the order of a history loses accuracy when the order is destroyed "
        "(a negative change); a model that ignores order stays at about 0%. The order-blind control (a user is the "
        "mean of its history's SASRec item embeddings) must show exactly 0% and a similarity of 1: it checks the "
        "probe itself.",
    ]
    if SHUFFLED_TRAINING in probe:
        lines += [
            "", "## Shuffled training (paper Table 3, Table 8)", "",
            f"Original: trained on the original training histories. Shuffle: the same recipe trained on training "
            f"histories shuffled once before training (seed {seed}). Both are tested on the original test histories.",
            *_comparison_tables(probe[SHUFFLED_TRAINING]),
        ]
    if SHUFFLED_INFERENCE in probe:
        lines += [
            "", "## Shuffled inference (paper Fig. 1, Table 12)", "",
            f"Trained on original histories; tested on the original and on shuffled test histories (seed {seed}).",
            *_comparison_tables(probe[SHUFFLED_INFERENCE]),
        ]
        if SCATTER_FILE in figure_names:
            lines += ["", f"![Original vs shuffled scores, y = x line]({SCATTER_FILE})"]
    if REPRESENTATION_SIMILARITY in probe:
        rows = [
            [label, f"`{name}`", f"{cell['cosine']:.4f}", f"{cell['std']:.4f}"]
            for label, by_name in probe[REPRESENTATION_SIMILARITY].items()
            for name, cell in by_name.items()
        ]
        lines += [
            "", "## Representation similarity (paper Table 5)", "",
            "Cosine similarity between a user's representation of the original and of the shuffled test history, "
            "averaged over users (1 = the representation ignores order). LLM-SRec: `h_U` is the backbone's last "
            "hidden state at `[UserOut]`, `f_user(h_U)` the recommendation-space vector it is ranked with; SASRec: "
            "`O_u`.",
            "", *_table(["Model", "Representation", "Cosine similarity (mean)", "Std over users"], rows),
        ]
        if SIMILARITY_FILE in figure_names:
            lines += ["", f"![Representation similarity]({SIMILARITY_FILE})"]
    if TRANSITION_BREAKDOWN in probe:
        lines += [
            "", "## Transition vs non-transition users (paper Fig. 3)", "",
            "t-score of a user = mean, over the consecutive pairs i_t → i_t+1 of the test history, of the number of "
            "times that transition occurs in the training sequences; the top 50% of users by t-score form the "
            "Transition set. Original / shuffled inference per group.",
            *_breakdown_tables(probe[TRANSITION_BREAKDOWN], setup),
        ]
        if BREAKDOWN_FILES[TRANSITION_BREAKDOWN] in figure_names:
            lines += ["", f"![Transition vs non-transition users]({BREAKDOWN_FILES[TRANSITION_BREAKDOWN]})"]
    if WARM_COLD_BREAKDOWN in probe:
        share = f"{WARM_COLD_FRACTION:.0%}"
        lines += [
            "", "## Warm vs cold target items (paper Fig. 4)", "",
            f"Items ranked by training interactions: the top {share} ({setup.get('warm_items', '?')} items) are warm, "
            f"the bottom {share} ({setup.get('cold_items', '?')} items) cold; users are grouped by their test target. "
            "Original / shuffled inference per group.",
            *_breakdown_tables(probe[WARM_COLD_BREAKDOWN], setup),
        ]
        if BREAKDOWN_FILES[WARM_COLD_BREAKDOWN] in figure_names:
            lines += ["", f"![Warm vs cold target items]({BREAKDOWN_FILES[WARM_COLD_BREAKDOWN]})"]
    lines += [
        "", "## Method", "",
        "- Shuffling permutes each user's whole history once, seeded per user (`[seed, user_index]`); the target "
        "never moves. In LLM-SRec prompts only the titles and item embeddings move: the `Item No.` numbers and "
        "timestamps keep their slots, and the prompt shows the last items of the permuted history. SASRec sees the "
        "permuted id sequence.",
        "- Original and shuffled rankings use identical candidate lists (negatives are drawn per user from the "
        "items outside the user's known sequence, whose set shuffling does not change).",
        "- Shuffled-training models are selected on the original validation histories and tested on the original "
        "test histories; LLM-SRec's frozen SASRec teacher is the one trained on original sequences.",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["format_cell", "format_change", "render_report"]
