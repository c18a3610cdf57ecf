"""Sweeps: a grid of methods x seeds x task orders, each cell a run directory of its own.

Layout: ``DIR/sweep.json`` (the grid and every cell) and ``DIR/seed<S>/order<K>/<method>/``,
each a normal run directory. Order 0 is the stream as configured; order K > 0 is a seeded
permutation of its tasks drawn from K alone (never the configured order itself), so every
seed and method sees the same orders and cells differ only in what the grid says. Within a
seed the first cell with a base stage trains it and the others start from its saved
``base_model`` (``benchmark.base=null``): the base stage depends on neither the task order
nor the method. Every cell's config is validated before anything is written; a re-run skips
complete cells without loading a model and resumes an incomplete one (the Runner does that),
so a killed sweep continues where it stopped. A sweep grows: methods, seeds and orders given
to a later command join those of ``sweep.json`` (existing cells kept as they are, complete
ones not rerun), and its settings may change in results-neutral keys only
(:mod:`mcit.config.neutral`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from mcit.atomic_files import atomic_write_json
from mcit.config import RunConfig, config_to_dict, load_config, method_list
from mcit.distributed import SINGLE, World
from mcit.errors import UserError
from mcit.run_changes import config_changes, current_config
from mcit.seeds import derive_seed
from mcit.store import BASE_DIR, SWEEP_FILE, read_results_file, read_sweep

FORMAT = 1  # of sweep.json


@dataclass(frozen=True)
class Method:
    label: str  # the cell directory's name
    spec: str  # a YAML value for the config's ``method`` key


@dataclass(frozen=True)
class Cell:
    method: str  # the method's label
    seed: int
    order: int
    tasks: list[str]  # the stream's task names in this cell's order
    path: str  # relative to the sweep directory
    base_from: str | None  # the cell whose base_model this one starts from
    overrides: list[str]  # what this cell adds to the sweep's overrides (a `mcit run` reproduces it)


@dataclass
class Sweep:
    """A validated grid: :func:`plan_sweep` builds it, :func:`run_sweep` runs it."""

    out: Path
    grid: dict[str, Any]  # what must match for a re-run in the same directory
    cells: list[Cell]
    configs: list[RunConfig]  # one per cell


def split_methods(text: str) -> list[str]:
    """``--methods`` split on its top-level commas: ``"seqft,[er, dgg]"`` -> ``["seqft", "[er, dgg]"]``."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    if any(not item for item in items):
        raise UserError(f"--methods {text!r} has an empty entry")
    return items


def parse_method(spec: str) -> Method:
    """A registered name, or a YAML flow list (a chain, entries with options), labelled by what it gives.

    ``er`` -> ``er``; ``[er, dgg]`` -> ``er+dgg``; ``[{name: er, buffer_per_task: 50}]`` -> ``er-buffer_per_task=50``.
    """
    try:
        entries = method_list(yaml.safe_load(spec))
    except yaml.YAMLError:
        raise UserError(f"--methods entry {spec!r} is not a method name nor a YAML list") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
        raise UserError(f"--methods entry {spec!r}: give a method name, or a list of names and {{name: ..., option: value}} mappings")
    parts = ["-".join([entry["name"], *(f"{key}={value}" for key, value in entry.items() if key != "name")]) for entry in entries]
    label = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "+".join(parts)).strip("_.")
    return Method(label, spec)


def task_order(count: int, order: int) -> list[int]:
    """Positions of the configured tasks in order ``order``: 0 keeps them; K > 0 draws a permutation from K alone."""
    configured = list(range(count))
    if order == 0 or count < 2:
        return configured
    rng, positions = random.Random(derive_seed("order", order)), list(configured)
    while positions == configured:  # the configured order is order 0's, so a drawn one differs from it
        rng.shuffle(positions)
    return positions


def _orders(config: RunConfig, orders: list[int]) -> dict[int, list[int]]:
    """Each order's task positions; UserError where orders cannot apply or two give the same one."""
    from mcit.scenarios import SCENARIOS

    tasks = config.benchmark.task_names()
    if orders != [0]:
        if SCENARIOS.get(config.scenario).runs_on != "stream":
            raise UserError(f"--orders permute a task stream; scenario {config.scenario!r} has no task order (give --orders 0)")
        if len(tasks) < 2:
            raise UserError(f"--orders permute the stream's tasks; it has {len(tasks)} (give --orders 0)")
    drawn = {order: task_order(len(tasks), order) for order in orders}
    seen: dict[tuple[int, ...], int] = {}
    for order, positions in drawn.items():
        if tuple(positions) in seen:
            raise UserError(
                f"orders {seen[tuple(positions)]} and {order} give the same task order {[tasks[i] for i in positions]} "
                f"(the stream has {len(tasks)} tasks); choose other --orders"
            )
        seen[tuple(positions)] = order
    return drawn


def plan_sweep(
    config_path: Path | None, overrides: list[str], methods: list[str] | None, seeds: list[int] | None,
    orders: list[int] | None, out: Path,
) -> Sweep:
    """Build and validate every cell of the grid; nothing is written.

    Args:
        config_path: The config file (or published stream name), or None for the default run.
        overrides: ``key=value`` overrides applied to every cell.
        methods: Method specs (see :func:`parse_method`); None: the config's method.
        seeds: Seeds; None: the config's seed.
        orders: Task orders; None: [0], the stream as configured.
        out: The sweep directory.

    Raises:
        UserError: For a config or cell that does not validate (naming the cell), a method
            spec that does not parse, orders that cannot apply, or an ``out`` that holds a
            run, other files than a sweep, or a sweep whose shared settings differ in one
            that changes results (a sweep may grow by methods, seeds and orders).
    """
    base = load_config(config_path, overrides)
    if methods is not None and any(o.split("=", 1)[0].split(".")[0] == "method" for o in overrides):
        raise UserError("give method options in --methods (e.g. '[{name: er, buffer_per_task: 50}]'), not as method... overrides")
    if seeds is not None and any(o.split("=", 1)[0] == "seed" for o in overrides):
        raise UserError("give the seeds with --seeds, not seed=...")
    if methods is None:
        grid_methods = [Method("+".join(m.name for m in base.method), json.dumps(config_to_dict(base)["method"]))]
    else:
        grid_methods = [parse_method(spec) for spec in methods]
    labels = [m.label for m in grid_methods]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(f"--methods gives method {repeated[0]!r} twice")
    seeds = [base.seed] if seeds is None else seeds
    orders = [0] if orders is None else orders
    out = Path(out).resolve()
    stored = read_sweep(out) if out.is_dir() else None
    if stored is not None:  # the sweep grows: what it has first (so its cells keep their base cells), then what is new
        grid_methods, seeds, orders = _grown(stored, grid_methods, seeds, orders)
    positions = _orders(base, orders)
    configured_tasks = config_to_dict(base)["benchmark"]["tasks"]
    cells, configs = [], []
    for seed in seeds:
        base_cell: Cell | None = None
        for order in orders:
            for method in grid_methods:
                path = f"seed{seed}/order{order}/{method.label}"
                extra = [f"seed={seed}", f"method={method.spec}"]
                if order != 0:
                    extra.append(f"benchmark.tasks={json.dumps([configured_tasks[i] for i in positions[order]])}")
                if base_cell is not None:
                    extra += [f"model.name={json.dumps(str(out / base_cell.path / BASE_DIR))}", "benchmark.base=null"]
                try:
                    config = load_config(config_path, [*overrides, *extra])
                except UserError as error:
                    raise UserError(f"cell {path}: {error}") from None
                base_from = base_cell.path if base_cell is not None else None
                cell = Cell(method.label, seed, order, config.benchmark.task_names(), path, base_from, extra)
                if base_cell is None and config.benchmark.base is not None:
                    base_cell = cell
                cells.append(cell)
                configs.append(config)
    tasks = base.benchmark.task_names()
    grid = {
        "methods": [{"label": m.label, "method": config_to_dict(c)["method"]} for m, c in zip(grid_methods, configs)],
        "seeds": seeds,
        "orders": {str(order): [tasks[i] for i in positions[order]] for order in orders},
        "config": {k: v for k, v in config_to_dict(base).items() if k not in ("seed", "method")},
    }
    _check_out(out, grid)
    from mcit.models.hf import check_model_dir

    check_model_dir(configs[0].model.name)
    return Sweep(out, grid, cells, configs)


def _grown(stored: dict[str, Any], methods: list[Method], seeds: list[int], orders: list[int]) -> tuple[list[Method], list[int], list[int]]:
    """The stored sweep's methods, seeds and orders, then the new ones asked for.

    A stored method keeps the spec its cells were made with (their ``method=`` override).
    """
    grid = stored.get("grid") or {}
    specs = {}
    for cell in stored["cells"]:
        for override in cell.get("overrides") or []:
            if override.startswith("method="):
                specs.setdefault(cell["method"], override.removeprefix("method="))
    kept = [Method(entry["label"], specs[entry["label"]]) for entry in grid.get("methods") or [] if entry.get("label") in specs]
    known = {method.label for method in kept}
    old_seeds = list(grid.get("seeds") or [])
    old_orders = [int(order) for order in grid.get("orders") or {}]
    return (
        kept + [m for m in methods if m.label not in known],
        old_seeds + [seed for seed in seeds if seed not in old_seeds],
        old_orders + [order for order in orders if order not in old_orders],
    )


def _check_out(out: Path, grid: dict[str, Any]) -> None:
    """Refuse a directory that holds a run, other things than a sweep, or a sweep whose results the grid would change."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if (out / "results.json").exists() or (out / "config.yaml").exists():
        raise UserError(f"--out {out} holds a run directory of `mcit run`; give another directory for the sweep")
    stored = read_sweep(out)
    if stored is None:
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"--out {out} is not empty and holds no sweep (no {SWEEP_FILE}); give a new or empty directory")
        return
    existing = stored.get("grid") or {}
    refused = [change for change in config_changes(existing.get("config"), grid["config"]) if change.neutral is None]
    described = [change.describe() for change in refused]
    before = {entry.get("label"): entry.get("method") for entry in existing.get("methods") or []}
    described += [
        f"method {entry['label']} {json.dumps(before[entry['label']])} -> {json.dumps(entry['method'])}"
        for entry in grid["methods"] if entry["label"] in before and before[entry["label"]] != entry["method"]
    ]
    described += [
        f"order {order} {existing['orders'][order]} -> {tasks}"
        for order, tasks in grid["orders"].items() if order in (existing.get("orders") or {}) and existing["orders"][order] != tasks
    ]
    if described:
        raise UserError(
            f"{out} holds a sweep of another grid; these settings change results: {', '.join(described)}. "
            "Use another --out (a sweep grows by methods, seeds and orders; other settings may change only where "
            "they cannot change results)"
        )


def _check_saved_config(run_dir: Path, config: RunConfig) -> None:
    """A complete cell must hold this cell's run, up to results-neutral settings (read only; the Runner checks incomplete ones)."""
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) if (run_dir / "config.yaml").is_file() else None
    if saved is None:
        raise UserError(f"{run_dir} holds results but no config.yaml; move it away to run the cell again")
    refused = [change for change in config_changes(current_config(run_dir, saved), config_to_dict(config)) if change.neutral is None]
    if refused:
        raise UserError(
            f"{run_dir} holds a run of another config than its cell's ({', '.join(change.describe() for change in refused)}); "
            "move it away to run the cell again"
        )


def run_sweep(
    sweep: Sweep, progress=None, on_cell: Callable[[int, Cell, str], None] | None = None, world: World = SINGLE
) -> list[dict[str, Any]]:
    """Run (or resume) every cell in order; returns each cell's results.

    Args:
        sweep: From :func:`plan_sweep`.
        progress: A :class:`mcit.run_setup.Progress` every cell's Runner reports to.
        on_cell: Called before each cell with its index, the cell and ``"complete"`` (skipped),
            ``"resume"`` or ``"run"``.
        world: The processes of an ``accelerate launch``: every one runs every cell; rank 0 writes.

    Raises:
        UserError: From a cell's Runner, or for a cell whose base model is missing.
    """
    from mcit.runner import Runner

    if world.is_main:
        sweep.out.mkdir(parents=True, exist_ok=True)
        description = {"format": FORMAT, "grid": sweep.grid, "cells": [asdict(c) for c in sweep.cells]}
        if read_sweep(sweep.out) != description:  # new, grown, or with new results-neutral settings
            atomic_write_json(sweep.out / SWEEP_FILE, description)
    world.barrier()
    outcomes = []
    for index, (cell, config) in enumerate(zip(sweep.cells, sweep.configs)):
        run_dir = sweep.out / cell.path
        results = read_results_file(run_dir / "results.json")
        if results is not None and results.get("complete") is True:
            _check_saved_config(run_dir, config)
            if on_cell is not None:
                on_cell(index, cell, "complete")
            outcomes.append(results)
            continue
        if on_cell is not None:
            on_cell(index, cell, "run" if results is None else "resume")
        if cell.base_from is not None and not (sweep.out / cell.base_from / BASE_DIR / "config.json").is_file():
            raise UserError(f"cell {cell.path} starts from {sweep.out / cell.base_from / BASE_DIR}, which is missing; remove {sweep.out / cell.base_from} to train it again")
        outcomes.append(Runner(config, run_dir, progress, world=world).run())
    return outcomes
