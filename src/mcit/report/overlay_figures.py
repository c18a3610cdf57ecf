"""The figures of ``mcit report`` that compare runs: each task's accuracy in every run, and
final accuracy against forgetting (matplotlib, Agg canvas, as :mod:`mcit.report.figures`).

Runs are aligned by task name and by step (zero-shot, after step 1, 2, ...): runs of other
task orders trained a task at other steps, so each line marks the step that trained it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from mcit.report.figures import save_png
from mcit.report.groups import Estimate
from mcit.report.runs import MatrixView

ZERO_SHOT = "zero-shot"
TRAINED_MARKER = "*"
LABEL_OFFSETS = ((7, 6), (7, -14), (-7, 6), (-7, -14), (7, 16), (7, -24))  # points from the marker, tried in turn


def colour(index: int, count: int) -> tuple[float, ...]:
    """The colour of line (or point) group ``index`` of ``count``: tab10, or tab20 past ten."""
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return palette(index % palette.N)


@dataclass(frozen=True)
class Curve:
    """One run's accuracy on one task after each step, in points."""

    label: str  # the legend entry: the run, or the sweep method its cell belongs to (with its count of cells)
    group: int  # colour index: the cells of one sweep method share a colour and a legend entry
    steps: list[int]  # 0 = zero-shot, k = after step k
    values: list[float | None]
    trained_at: int | None  # the step that trained the task (None: eval-only, or a pool's skill)


def task_curves(view: MatrixView, label: str, group: int) -> dict[str, Curve]:
    """Each column of a run's matrix as a curve, keyed by task (or skill) name."""
    steps = []
    for index, row in enumerate(view.rows):
        steps.append(0 if row == ZERO_SHOT else index + (0 if ZERO_SHOT in view.rows else 1))
    curves = {}
    for column, name in enumerate(view.columns):
        trained = [step for step, row in zip(steps, view.rows) if row == name and step > 0]
        values = [row[column] for row in view.values]
        curves[name] = Curve(label, group, steps, values, trained[0] if trained else None)
    return curves


def literal(text: str) -> str:
    """``text`` as matplotlib must print it: a name with two ``$`` is otherwise read as math (or fails to parse)."""
    return text.replace("$", r"\$")


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def task_overlay(task: str, curves: list[Curve], groups: int, eval_only: bool, path: Path) -> Path:
    """Task ``task``'s accuracy over the steps, one line per run (thin where a sweep method has several)."""
    figure = Figure(figsize=(5.2, 3.3))
    ax = figure.subplots()
    members = {curve.group: sum(c.group == curve.group for c in curves) for curve in curves}
    labelled: set[int] = set()
    for curve in curves:
        many = members[curve.group] > 1
        label = None if curve.group in labelled else literal(curve.label)
        labelled.add(curve.group)
        line_colour = colour(curve.group, groups)
        ax.plot(curve.steps, [_nan(v) for v in curve.values], marker="o", markersize=3.5, color=line_colour,
                linewidth=1.0 if many else 1.8, alpha=0.65 if many else 1.0, label=label)
        if curve.trained_at is not None:
            at = curve.steps.index(curve.trained_at)
            ax.plot([curve.trained_at], [_nan(curve.values[at])], TRAINED_MARKER, markersize=8 if many else 11, color=line_colour,
                    markeredgecolor="black", markeredgewidth=0.6)
    if any(curve.trained_at is not None for curve in curves):
        ax.plot([], [], TRAINED_MARKER, markersize=10, color="lightgrey", markeredgecolor="black", label="trained at this step")
        labelled.add(-1)
    last = max(max(curve.steps) for curve in curves)
    ax.set_xticks(range(last + 1), [ZERO_SHOT if step == 0 else f"step {step}" for step in range(last + 1)],
                  rotation=30 if last > 5 else 0, ha="right" if last > 5 else "center")
    ax.set_xlim(-0.3, last + 0.3)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(literal(f"{task}* (eval-only: never trained)" if eval_only else task))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14 if last <= 5 else -0.22), ncol=min(3, len(labelled)),
              fontsize="small", frameon=False)
    return save_png(figure, path)


def _place_labels(figure: Figure, labels: list[Annotation]) -> None:
    """Move each label to the first of :data:`LABEL_OFFSETS` where it overlaps no label placed before it
    (two methods with close scores otherwise print their names over each other)."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    placed = []
    for label in labels:
        for offset in LABEL_OFFSETS:
            label.xyann = offset
            label.set_horizontalalignment("left" if offset[0] > 0 else "right")
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        else:
            label.xyann = LABEL_OFFSETS[0]
            label.set_horizontalalignment("left")
            box = label.get_window_extent(renderer)
        placed.append(box)


@dataclass(frozen=True)
class Point:
    """A run's (or a sweep method's) average forgetting and final average accuracy, in points."""

    label: str
    group: int  # colour index, as the task figures have it
    forgetting: Estimate
    accuracy: Estimate


def accuracy_against_forgetting(points: list[Point], groups: int, interval: str, path: Path) -> Path:
    """Final average accuracy (y) against average forgetting (x), one point per method or run,
    with the 95% interval in both directions where it has one (``interval``: "seeds" or "orders")."""
    figure = Figure(figsize=(6.0, 4.2))
    ax = figure.subplots()
    for point in points:
        point_colour = colour(point.group, groups)
        ax.errorbar(
            [point.forgetting.mean], [point.accuracy.mean], xerr=point.forgetting.half_width, yerr=point.accuracy.half_width,
            fmt="o", markersize=7, capsize=4, color=point_colour, ecolor=point_colour, elinewidth=1.4,
        )
    ax.margins(0.25)
    ax.autoscale_view()  # the limits the labels are placed in (autoscaling is otherwise left to the draw)
    _place_labels(figure, [
        ax.annotate(literal(point.label), (point.forgetting.mean, point.accuracy.mean), xytext=LABEL_OFFSETS[0],
                    textcoords="offset points", fontsize="small", color="black")
        for point in points
    ])
    ax.set_xlabel("average forgetting (points, from own training)")
    ax.set_ylabel("final average accuracy (points)")
    ax.grid(alpha=0.3)
    ax.text(0.99, 0.98, "better: up and to the left", transform=ax.transAxes, ha="right", va="top", fontsize="small",
            color="#555", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    bars = f"; bars: 95% interval over {interval}" if interval else ""
    ax.set_title(f"final accuracy against forgetting{bars}", fontsize="medium")
    return save_png(figure, path)
