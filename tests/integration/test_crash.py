"""Crash safety: SIGKILL a real run at several moments, resume, and get the same results.

The run executes in a process of its own (forked from the tests' fork server, killed with
SIGKILL: no cleanup handlers). It reports phases through marker files; for the kills inside a
file write it wraps the store's writers so the process is killed while a checkpoint or the
results file is half-written, which is exactly when a non-atomic store would corrupt.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from conftest import fork_server, tiny_overrides
from mcit.config import load_config
from mcit.run_setup import Progress
from mcit.runner import Runner
from mcit.store import RunStore


def run_then_mark_done(run_dir: Path, markers: Path, stall: str, overrides: list[str]) -> None:
    """The killed process: the run, reporting its phases through marker files; with ``stall``, the
    store's writer of a checkpoint or of results.json stops halfway (its files partly written)."""
    import mcit.atomic_files as atomic_files
    import mcit.store as store

    def mark(name):
        (markers / name.replace("/", "_")).write_text("")

    def stall_forever(name):
        mark(name)
        time.sleep(600)

    if stall == "checkpoint":
        original_tree = store.save_state_tree

        def save_state_tree(tree, directory):
            original_tree(tree, directory)  # tensors and tree written, meta.json not yet
            if "task-002" in str(directory):
                stall_forever("stalled")

        store.save_state_tree = save_state_tree
    elif stall == "results":
        original_write = atomic_files.write_atomically

        def write_atomically(path, write):
            if path.name == "results.json" and (markers / "task 2_2 count").exists():
                def half(tmp):
                    write(tmp)  # temp file complete, not yet renamed
                    stall_forever("stalled")

                return original_write(path, half)
            return original_write(path, write)

        atomic_files.write_atomically = write_atomically

    def phase(description, total):
        mark(description)
        return lambda advance: None

    Runner(load_config(None, overrides), run_dir, Progress(phase=phase)).run()
    mark("done")


def wait_for(path: Path, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not process.is_alive():
            raise AssertionError(f"run ended (exit code {process.exitcode}) before {path.name!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path.name!r}")
        time.sleep(0.01)


def kill_run(tmp_path: Path, name: str, marker: str, delay: float, stall: str = "none") -> Path:
    """Start the run, wait for ``marker`` (+ ``delay`` s), SIGKILL it; return the run dir."""
    run_dir, markers = tmp_path / name, tmp_path / f"{name}-markers"
    markers.mkdir()
    # A real process, forked from the fork server that imported torch and mcit once (conftest.fork_server).
    process = fork_server().Process(target=run_then_mark_done, args=(run_dir, markers, stall, tiny_overrides()))
    process.start()
    try:
        wait_for(markers / marker.replace("/", "_"), process)
        time.sleep(delay)
        assert process.is_alive(), "the run finished before it could be killed; the test would prove nothing"
    finally:
        process.kill()  # SIGKILL: no cleanup handler runs
        process.join()
    assert process.exitcode == -signal.SIGKILL
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    return Runner(load_config(None, tiny_overrides()), run_dir).run()


# Kill points: phase marker to wait for, extra delay range (s), and which writer to stall.
KILL_POINTS = {
    "mid-base-stage": ("base stage", (0.0, 0.3), "none"),
    "mid-training": ("task 2/2 count", (0.0, 0.3), "none"),
    "mid-evaluation": ("eval after count", (0.0, 0.05), "none"),
    "mid-checkpoint-write": ("stalled", (0.0, 0.0), "checkpoint"),
    "mid-results-write": ("stalled", (0.0, 0.0), "results"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, reference, point):
    marker, (low, high), stall = KILL_POINTS[point]
    delay = random.Random(point).uniform(low, high)  # seeded: a failure can be replayed
    run_dir = kill_run(tmp_path, "run", marker, delay, stall)

    store = RunStore(run_dir)  # reading after the kill must never see a half-written file
    before = store.read_results()
    finished_rows = [] if before is None else before["rows"]
    for name in store.checkpoint_names():
        store.load_checkpoint(name)
    assert not any(p.name.startswith(".tmp") for p in (run_dir / "checkpoints").iterdir())

    resumed = Runner(load_config(None, tiny_overrides()), run_dir).run()

    assert resumed["matrix"] == reference["matrix"]
    assert resumed["zero_shot"] == reference["zero_shot"]
    assert resumed["rows"][: len(finished_rows)] == finished_rows  # nothing finished was lost
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["complete"] is True and on_disk["matrix"] == reference["matrix"]
