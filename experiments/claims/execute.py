"""Running the cells: in this process (one job) or in worker processes (``--jobs N``), base cells first.

A cell is complete when its ``results.json`` says so; a complete cell is not run again, but its
stored config is checked against the cell's (a changed claim definition must not reuse stale
runs silently). Each finished cell gets ``claims-cell.json``: the commit it was measured at and
its ``mcit run`` command. A cell waits for the base cell it starts from to be complete.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from claims.plan import Cell

RECORD = "claims-cell.json"
ROOT = Path(__file__).resolve().parents[2]


def commit_id() -> str:
    """``git rev-parse HEAD`` of the repository, with ``+dirty`` if the tree has changes ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if status.strip() else "")


def command(cell: Cell, overrides: list[str], out: Path) -> str:
    """The ``mcit run`` line that runs (or resumes) the cell by itself."""
    return " ".join(["OMP_NUM_THREADS=1", ".venv/bin/mcit", "run", "--out", shlex.quote(str(cell.directory(out))), *map(shlex.quote, overrides)])


def read_json(path: Path) -> dict[str, Any] | None:
    from mcit.store import read_results_file

    return read_results_file(path)


def is_complete(cell: Cell, out: Path) -> bool:
    results = read_json(cell.directory(out) / "results.json")
    return results is not None and results.get("complete") is True


def check_complete(cell: Cell, overrides: list[str], out: Path) -> None:
    """Raise UserError if a complete cell's stored run is of another config than the cell's (read only)."""
    from mcit.config import config_to_dict, load_config
    from mcit.run_setup import check_run_directory
    from mcit.store import RunStore

    check_run_directory(RunStore(cell.directory(out)), config_to_dict(load_config(None, overrides)))


def run_cell(cell: Cell, overrides: list[str], out: Path, commit: str) -> float:
    """Run or resume one cell in this process; returns its wall seconds and writes its record."""
    from mcit.atomic_files import atomic_write_json
    from mcit.config import load_config
    from mcit.runner import Runner

    start = time.perf_counter()
    Runner(load_config(None, overrides), cell.directory(out)).run()
    seconds = time.perf_counter() - start
    atomic_write_json(cell.directory(out) / RECORD, {"commit": commit, "command": command(cell, overrides, out), "seconds": seconds})
    return seconds


def _worker_start() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def run_cells(cells: list[Cell], out: Path, quick: bool, jobs: int, log=print) -> list[tuple[Cell, str]]:
    """Run every cell not yet complete, at most ``jobs`` at a time; returns the cells that failed, with why.

    A cell starts once the base cell it starts from is complete; a cell whose base failed is
    not started. Complete cells are checked (:func:`check_complete`) and skipped.
    """
    from mcit.errors import UserError

    commit = commit_id()
    failed: list[tuple[Cell, str]] = []
    pending = []
    for cell in cells:
        overrides = cell.overrides(out, quick)
        if is_complete(cell, out):
            try:
                check_complete(cell, overrides, out)
            except UserError as error:
                failed.append((cell, str(error)))
            continue
        pending.append(cell)
    pending.sort(key=lambda cell: cell.base_cell() is not None)  # base cells first: each unlocks its seed's others
    done = {cell for cell in cells if cell not in pending and all(cell != f for f, _ in failed)}
    log(f"{len(cells) - len(pending)} of {len(cells)} cells complete; {len(pending)} to run, {jobs} at a time (commit {commit})")
    executor = ProcessPoolExecutor(jobs, get_context("spawn"), initializer=_worker_start) if jobs > 1 else None
    running: dict[Future | None, Cell] = {}
    try:
        while pending or running:
            blocked = {f for f, _ in failed}
            for cell in list(pending):
                base = cell.base_cell()
                if base in blocked:
                    pending.remove(cell)
                    failed.append((cell, f"its base cell {base.group}/{base.label} failed"))
                elif (base is None or base in done) and len(running) < max(jobs, 1):
                    pending.remove(cell)
                    overrides = cell.overrides(out, quick)
                    log(f"run {cell.directory(out)}")
                    if executor is None:
                        try:
                            seconds = run_cell(cell, overrides, out, commit)
                            done.add(cell)
                            log(f"done {cell.directory(out)} in {seconds:.0f} s")
                        except Exception as error:  # noqa: BLE001 - a failed cell is reported, the others go on
                            failed.append((cell, f"{type(error).__name__}: {error}"))
                    else:
                        running[executor.submit(run_cell, cell, overrides, out, commit)] = cell
            if not running:
                if pending and not any(c.base_cell() is None or c.base_cell() in done for c in pending):
                    failed += [(cell, "its base cell is not complete") for cell in pending]
                    pending.clear()
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                cell = running.pop(future)
                try:
                    seconds = future.result()
                    done.add(cell)
                    log(f"done {cell.directory(out)} in {seconds:.0f} s")
                except Exception as error:  # noqa: BLE001 - a failed cell is reported, the others go on
                    failed.append((cell, f"{type(error).__name__}: {error}"))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return failed
