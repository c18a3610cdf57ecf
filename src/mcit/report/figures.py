"""The PNG figures of ``mcit report`` (matplotlib, Agg canvas; pyplot's global state is never used)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mcit.report.runs import MatrixView

DPI = 100


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG at :data:`DPI`, cropped to what it draws."""
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _empty(figure: Figure, title: str) -> None:
    ax = figure.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no scores yet", ha="center", va="center")
    ax.set_title(title)


def heatmap(view: MatrixView, title: str, path: Path) -> Path:
    """The accuracy matrix as a heatmap over 0..100 with each value annotated (``-`` when absent)."""
    rows, cols = len(view.rows), len(view.labels)
    figure = Figure(figsize=(max(4.0, 2.2 + 0.9 * cols), max(2.5, 1.4 + 0.45 * rows)))
    if not rows or not cols:
        _empty(figure, title)
        return save_png(figure, path)
    ax = figure.subplots()
    data = [[_nan(v) for v in row] for row in view.values]
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(np.array(data, dtype=float)), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(view.values):
        for j, value in enumerate(row):
            text = "-" if value is None else f"{value:.1f}"
            color = "black" if value is not None and value >= 55 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color if value is not None else "black", fontsize=9)
    ax.set_xticks(range(cols), view.labels, rotation=30, ha="right")
    ax.set_yticks(range(rows), view.rows)
    ax.set_xlabel(view.axis)
    ax.set_ylabel("after")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="accuracy (%)")
    return save_png(figure, path)


def curves(view: MatrixView, title: str, path: Path) -> Path:
    """One line per column: its accuracy at zero-shot and after each step; eval-only tasks dashed."""
    rows = len(view.rows)
    figure = Figure(figsize=(max(5.0, 2.5 + 0.8 * rows), 3.6))
    if not rows or not view.labels:
        _empty(figure, title)
        return save_png(figure, path)
    ax = figure.subplots()
    for j, label in enumerate(view.labels):
        ys = [_nan(row[j]) for row in view.values]
        ax.plot(range(rows), ys, marker="o", linestyle="--" if label.endswith("*") else "-", label=label)
    ax.set_xticks(range(rows), view.rows, rotation=30, ha="right")
    ax.set_xlim(-0.3, rows - 0.7)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("after")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return save_png(figure, path)
