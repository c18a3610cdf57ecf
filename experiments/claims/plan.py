"""The runs behind the claims: groups of cells, each group one stream or pool world, laid out per seed.

Every cell is one ``mcit run`` with a run directory of its own, ``OUT/seed<S>/<group>/<label>``,
so a stopped measurement resumes where it stopped (a complete cell is read, an incomplete one
resumes after its last finished task). Within a seed every cell starts from one of two base
models, each trained once by its *base cell*:

* ``default``: the default base stage (describe-the-object and the five text-only language
  skills), a model instruction-tuned on none of the stream's formats;
* ``instructed``: the same plus a share of every stream task, He et al.'s multi-task joint
  instruction tuning before the stream (the stream's formats and instructions taught jointly).

The other cells load the base cell's ``base_model`` (``model.name=...``, ``benchmark.base=null``),
so the cells of a seed differ only in what their row compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

STREAM_SIZES = ("benchmark.train_per_task=1000", "benchmark.eval_per_task=100")
REPLAY = 20  # samples kept per finished task (2% of a task): small enough that replay alone stays below joint
SAME_STYLE_STREAM = ("benchmark.tasks=[color_plain, count_plain, code_plain, shape, caption_plain]",)
STREAM_TASKS = ("color", "count", "code", "shape", "caption")
INSTRUCTED_SHARE = 300  # base-stage samples of each stream task in the instructed base
EPROJ_REUSE = 0.8  # eproj reuse_threshold: mean key cosine above which a task reuses a projector (seed 0 pilot: 2 of 5 tasks reuse)
POOL = (
    "scenario=pool", "benchmark.name=lifelong", "benchmark.train_per_task=400", "benchmark.eval_per_task=100",
    "pool.budget=300",
)  # fmt: skip
CLOSED_WORLD = ("benchmark.tasks=[colors, counting, shapes, captions, mixed]",)
OPEN_WORLD = ("benchmark.tasks=[describing, reversing, wording, captioning, blending]",)
PRUNED_POOL = 1000  # LITE's pool budget: half of the 2,000 samples the five datasets bring
PROJECTION = 1024  # LAMP's projected gradient size for the tiny model's 128-wide layers


def _method(spec: str) -> tuple[str, ...]:
    return (f"method={spec}",)


def _selector(name: str, method: str = "[seqft]", *extra: str) -> tuple[str, ...]:
    if name in ("lamp", "lite"):
        return (f"pool.selector={{name: {name}, dim: {PROJECTION}}}", f"method={method}", *extra)
    return (f"pool.selector={name}", f"method={method}", *extra)


ER = f"[{{name: er, buffer_per_task: {REPLAY}}}]"
DGG = f"[{{name: er, buffer_per_task: {REPLAY}}}, {{name: dgg, alpha: 0.2}}]"
POOL_CELLS = {
    "sequential": _selector("sequential"),
    "replay": _selector("sequential", f"[{{name: er, buffer_per_task: {REPLAY}}}]"),
    "random": _selector("random"),
    "lamp": _selector("lamp"),
    "lite": _selector("lite", "[seqft]", f"pool.pool_budget={PRUNED_POOL}"),
}


@dataclass(frozen=True)
class Group:
    """Cells that share a stream (or pool world) and a base model.

    Attributes:
        name: Directory name under ``OUT/seed<S>/``.
        title: One line for docs/claims.md.
        base: The base model its cells start from: a key of :data:`BASES`.
        overrides: ``key=value`` for every cell of the group.
        cells: Label -> the cell's own overrides (its method, selector).
        quick: Overrides of ``--quick`` (a tiny stream), applied after the others.
        quick_cells: Label -> more ``--quick`` overrides of that cell only.
    """

    name: str
    title: str
    base: str
    overrides: tuple[str, ...]
    cells: dict[str, tuple[str, ...]]
    quick: tuple[str, ...]
    quick_cells: dict[str, tuple[str, ...]] = field(default_factory=dict)


QUICK_STREAM = (
    "benchmark.tasks=[color, count]", "benchmark.eval_only=[compare, arithmetic]", "benchmark.train_per_task=24",
    "benchmark.eval_per_task=8", "train.epochs=1", "train.lr=1e-3", "eval.batch_size=16",
)  # fmt: skip
QUICK_POOL = (
    "benchmark.train_per_task=24", "benchmark.eval_per_task=8", "pool.budget=16", "train.epochs=1", "train.lr=1e-3",
    "eval.batch_size=16",
)  # fmt: skip
QUICK_LITE = {"lite": ("pool.pool_budget=60",)}
QUICK_BASE = ("benchmark.base.samples_per_task=16", "benchmark.base.train.epochs=1")

GROUPS: dict[str, Group] = {
    group.name: group
    for group in (
        Group(
            "default", f"The default stream (color, count, code, shape, caption; replay keeps {REPLAY} samples a task) "
            "from the default base", "default", STREAM_SIZES,
            {
                "seqft": _method("[seqft]"), "joint": _method("[joint]"), "er": _method(ER), "er+dgg": _method(DGG),
                "er+dgg-no-gate": _method(DGG.replace("alpha: 0.2", "alpha: 1.0")),
                "er+dgg-no-norm": _method(DGG.replace("alpha: 0.2", "alpha: 0.2, norm: none")),
                "eproj": _method("[eproj]"), "ewc": _method("[ewc]"), "mas": _method("[mas]"),
                "soft_targets": _method("[soft_targets]"), "lora": _method("[lora]"),
                "lora-keep": _method("[{name: lora, merge: false}]"), "msgm+1%": _method("[{name: msgm, rehearsal: 0.01}]"),
            },
            QUICK_STREAM,
        ),
        Group(
            "instructed", "The default stream from the instructed base (the stream's formats taught jointly first)",
            "instructed", STREAM_SIZES,
            {
                "seqft": _method("[seqft]"), "er": _method(ER), "eproj": _method("[eproj]"),
                "eproj-reuse": _method(f"[{{name: eproj, reuse_threshold: {EPROJ_REUSE}}}]"), "ewc": _method("[ewc]"),
                "mas": _method("[mas]"), "tir": _method("[tir]"),
            },
            QUICK_STREAM,
        ),
        Group(
            "same-style", "The default stream with every task drawn in one style (plain): tasks whose images are alike",
            "default", STREAM_SIZES + SAME_STYLE_STREAM, {"er": _method(ER), "er+dgg": _method(DGG)},
            QUICK_STREAM + ("benchmark.tasks=[color_plain, count_plain]",),
        ),
        Group(
            "lamp-closed", "The embedded lifelong pool (closed answer sets; the rare skill is code)", "default",
            POOL + CLOSED_WORLD, POOL_CELLS, QUICK_POOL, QUICK_LITE,
        ),
        Group(
            "lamp-open", "The open-answer lifelong pool (answers of many values; the rare skill is plural)",
            "default", POOL + OPEN_WORLD, POOL_CELLS, QUICK_POOL, QUICK_LITE,
        ),
    )
}


@dataclass(frozen=True)
class Base:
    """The cell that trains a base model, and the base stage it trains."""

    group: str
    label: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] = QUICK_BASE


INSTRUCTED_BASE = (
    f"benchmark.base.tasks=[describe, compare, choice, arithmetic, reverse, plural, {', '.join(STREAM_TASKS)}]",
    "benchmark.base.samples_per_task={describe: 3000, compare: 600, choice: 600, arithmetic: 600, reverse: 600, plural: 600, "
    + ", ".join(f"{task}: {INSTRUCTED_SHARE}" for task in STREAM_TASKS) + "}",
)
BASES = {
    "default": Base("default", "seqft", ()),
    "instructed": Base("instructed", "seqft", INSTRUCTED_BASE, ("benchmark.base.tasks=[describe, arithmetic, color, count]", *QUICK_BASE)),
}


@dataclass(frozen=True)
class Cell:
    """One run: a group's cell for one seed."""

    group: str
    label: str
    seed: int

    def directory(self, out: Path) -> Path:
        return out / f"seed{self.seed}" / self.group / self.label

    def base_cell(self) -> Cell | None:
        """The cell whose base model this one starts from; None for a base cell (it trains its own)."""
        base = BASES[GROUPS[self.group].base]
        return None if (base.group, base.label) == (self.group, self.label) else Cell(base.group, base.label, self.seed)

    def overrides(self, out: Path, quick: bool) -> list[str]:
        """Everything ``mcit run`` needs for this cell, in order (later values win)."""
        group = GROUPS[self.group]
        values = ["threads=1", f"seed={self.seed}", *group.overrides, *group.cells[self.label]]
        values += [*group.quick, *group.quick_cells.get(self.label, ())] if quick else []
        base_cell = self.base_cell()
        if base_cell is None:
            base = BASES[group.base]
            values += [*base.overrides, *(base.quick if quick else ())]
        else:
            values += [f"model.name={json.dumps(str(base_cell.directory(out).resolve() / 'base_model'))}", "benchmark.base=null"]
        return values


def cells_for(needed: set[tuple[str, str]], seeds: list[int]) -> list[Cell]:
    """The cells of ``needed`` (group, label) pairs and the base cells they start from, for every seed, base cells first."""
    pairs = set(needed)
    for group, _ in needed:
        base = BASES[GROUPS[group].base]
        pairs.add((base.group, base.label))
    ordered = sorted(pairs, key=lambda pair: (Cell(*pair, 0).base_cell() is not None, list(GROUPS).index(pair[0]), pair[1]))
    return [Cell(group, label, seed) for seed in seeds for group, label in ordered]
