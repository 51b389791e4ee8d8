"""PNG figures of a probe result (the `run_probes` / ``probe.json`` dict), drawn with matplotlib's Agg canvas.

Why `Figure` + `FigureCanvasAgg` rather than pyplot: no global backend or figure state, so the plots render the same
headless (CI, a GPU node) and inside a notebook, and nothing leaks between calls.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .probes import (
    REPRESENTATION_SIMILARITY,
    SHUFFLED_INFERENCE,
    SHUFFLED_TRAINING,
    TRANSITION_BREAKDOWN,
    WARM_COLD_BREAKDOWN,
)

SCATTER_FILE = "shuffled_scores.png"
SIMILARITY_FILE = "representation_similarity.png"
BREAKDOWN_FILES = {TRANSITION_BREAKDOWN: "transition_breakdown.png", WARM_COLD_BREAKDOWN: "warm_cold_breakdown.png"}
_SCATTER_TITLES = {
    SHUFFLED_INFERENCE: "Shuffled inference (trained on original)",
    SHUFFLED_TRAINING: "Shuffled training (tested on original)",
}
_BREAKDOWN_TITLES = {
    TRANSITION_BREAKDOWN: "Transition vs non-transition users",
    WARM_COLD_BREAKDOWN: "Warm vs cold target items",
}
_MARKERS = ("o", "s", "^", "D", "v", "P")
_DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path


def _colors(probe: Mapping[str, Any]) -> dict[str, str]:
    """One colour of matplotlib's default cycle per model label, the same in every figure of a report."""
    sections = (SHUFFLED_INFERENCE, SHUFFLED_TRAINING, REPRESENTATION_SIMILARITY, *BREAKDOWN_FILES)
    labels = list(dict.fromkeys(label for section in sections for label in probe.get(section, {})))
    palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: palette[number % len(palette)] for number, label in enumerate(labels)}


def plot_shuffled_scores(probe: Mapping[str, Any], path: str | os.PathLike, metric: str = "NDCG@10") -> Path:
    """Original (x) vs shuffled (y) scores with the y = x line, one panel per shuffle probe (the paper's Fig. 1):
    a point below the line lost accuracy when order was destroyed; one on it ignores order."""
    sections = [section for section in (SHUFFLED_INFERENCE, SHUFFLED_TRAINING) if section in probe]
    if not sections:
        raise ValueError("the probe result has no shuffled-inference or shuffled-training section to plot")
    figure = Figure(figsize=(5.2 * len(sections), 4.8))
    colors = _colors(probe)
    for axes, section in zip(figure.subplots(1, len(sections), squeeze=False)[0], sections):
        protocols = list(dict.fromkeys(p for comparison in probe[section].values() for p in comparison))
        values = []
        for label, comparison in probe[section].items():
            for protocol, marker in zip(protocols, _MARKERS):
                cell = comparison.get(protocol, {}).get(metric)
                if cell is None:
                    continue
                values += [cell["original"], cell["shuffled"]]
                axes.scatter(cell["original"], cell["shuffled"], s=70, marker=marker, color=colors[label],
                             edgecolors="black", linewidths=0.6, label=f"{label} · {protocol}", zorder=3)
        top = max(values) * 1.1 if values and max(values) > 0 else 1.0
        axes.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="y = x", zorder=1)
        axes.set_xlim(0, top)
        axes.set_ylim(0, top)
        axes.set_aspect("equal")
        axes.set_xlabel(f"Original sequence score ({metric})")
        axes.set_ylabel(f"Shuffled sequence score ({metric})")
        axes.set_title(_SCATTER_TITLES[section], fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6.5, loc="upper left")
    return _save(figure, Path(path))


def plot_breakdown(probe: Mapping[str, Any], section: str, path: str | os.PathLike, metric: str = "NDCG@10") -> Path:
    """Grouped bars of ``metric`` per group (Transition / Non-transition, or Warm / Cold), one bar pair per model:
    original (solid) and shuffled inference (hatched); one panel per protocol (the paper's Fig. 3 / Fig. 4)."""
    results = probe.get(section)
    if not results:
        raise ValueError(f"the probe result has no {section!r} section to plot")
    labels = list(results)
    groups = list(dict.fromkeys(group for by_group in results.values() for group in by_group))
    protocols = list(dict.fromkeys(p for by_group in results.values() for c in by_group.values() for p in c))
    colors = _colors(probe)
    figure = Figure(figsize=(max(5.5, 2.2 * len(groups) * max(1, len(labels) / 2)), 3.6 * len(protocols)))
    width = 0.8 / (2 * len(labels))
    for axes, protocol in zip(figure.subplots(len(protocols), 1, squeeze=False)[:, 0], protocols):
        positions = np.arange(len(groups))
        for number, label in enumerate(labels):
            for offset, (view, hatch, alpha) in enumerate((("original", None, 1.0), ("shuffled", "//", 0.55))):
                heights = [results[label].get(group, {}).get(protocol, {}).get(metric, {}).get(view, 0.0)
                           for group in groups]
                axes.bar(positions - 0.4 + width * (2 * number + offset + 0.5), heights, width, color=colors[label],
                         alpha=alpha, hatch=hatch, edgecolor="black", linewidth=0.5,
                         label=f"{label} ({view})")
        axes.set_xticks(positions, groups)
        axes.set_ylim(0, max(1e-6, max(patch.get_height() for patch in axes.patches)) * 1.5)  # room for the legend
        axes.set_ylabel(metric)
        axes.set_title(f"{_BREAKDOWN_TITLES.get(section, section)} — {protocol}", fontsize=10)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=6.5, ncol=2, loc="upper center")
    return _save(figure, Path(path))


def plot_similarity(probe: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Bars of the mean original-vs-shuffled cosine similarity per model and representation (the paper's Table 5),
    with the per-user standard deviation; 1 (dashed) means the representation ignores order."""
    results = probe.get(REPRESENTATION_SIMILARITY)
    if not results:
        raise ValueError("the probe result has no representation-similarity section to plot")
    bars = [(label, name, cell) for label, by_name in results.items() for name, cell in by_name.items()]
    colors = _colors(probe)
    figure = Figure(figsize=(max(5.0, 1.5 * len(bars)), 4.4))
    axes = figure.subplots()
    positions = np.arange(len(bars))
    axes.bar(positions, [cell["cosine"] for _, _, cell in bars], 0.6, yerr=[cell["std"] for _, _, cell in bars],
             color=[colors[label] for label, _, _ in bars], edgecolor="black", linewidth=0.5, capsize=4)
    axes.axhline(1.0, linestyle="--", color="grey", linewidth=1)
    axes.set_xticks(positions, [f"{textwrap.fill(label, 16)}\n{name}" for label, name, _ in bars], fontsize=7)
    axes.set_ylim(min(0.0, min(cell["cosine"] - cell["std"] for _, _, cell in bars)), 1.08)
    axes.set_ylabel("Cosine similarity (original vs shuffled)")
    axes.set_title("Representation similarity", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, Path(path))


def plot_probe(probe: Mapping[str, Any], output_dir: str | os.PathLike) -> list[Path]:
    """Every figure the probe result supports, written into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if SHUFFLED_INFERENCE in probe or SHUFFLED_TRAINING in probe:
        paths.append(plot_shuffled_scores(probe, output_dir / SCATTER_FILE))
    if REPRESENTATION_SIMILARITY in probe:
        paths.append(plot_similarity(probe, output_dir / SIMILARITY_FILE))
    for section, name in BREAKDOWN_FILES.items():
        if probe.get(section):
            paths.append(plot_breakdown(probe, section, output_dir / name))
    return paths


__all__ = ["BREAKDOWN_FILES", "SCATTER_FILE", "SIMILARITY_FILE", "plot_breakdown", "plot_probe",
           "plot_shuffled_scores", "plot_similarity"]
