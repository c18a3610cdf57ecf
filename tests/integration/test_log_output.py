"""`mcit run` with its output to a pipe or a file (a batch job's log): lines as the work happens, whole tables, Ctrl-C.

The run is a real process on the tiny config. COLUMNS=40 makes the console narrower than
the result tables, so a table cropped to the console's width would show.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import tiny_overrides

NARROW = 40
LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<phase>.+?): (?P<what>started|done|stopped)\b")


# `mcit run`, held where task 2 has started (its "started" line written) until the test's Ctrl-C
# arrives: on a loaded machine the tiny task could otherwise end before the signal does.
HELD_AT_TASK_2 = textwrap.dedent(
    """
    import signal, sys, time
    import mcit.runner
    from mcit.cli import main

    real_train = mcit.runner.train

    def train(ctx, *args, **kwargs):
        if ctx.task.index == 1:
            # Short sleeps: the kernel may hand SIGINT to another of the process's threads, which
            # would not wake one long sleep of the main thread (seen: the run slept on for 300 s).
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                time.sleep(0.05)
        return real_train(ctx, *args, **kwargs)

    # Ctrl-C as a terminal delivers it, also where this suite runs as a background job (which
    # starts its children with SIGINT ignored, so Python would install no KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mcit.runner.train = train
    main()
    """
)


def command(run_dir: Path, held: bool = False) -> list[str]:
    start = ["-c", HELD_AT_TASK_2] if held else ["-m", "mcit"]
    return [sys.executable, *start, "run", *tiny_overrides(), "--out", str(run_dir)]


def environment() -> dict[str, str]:
    return dict(
        os.environ, COLUMNS=str(NARROW), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )


def phases(log: str) -> list[tuple[str, str]]:
    return [(m["phase"], m["what"]) for m in map(LINE.match, log.splitlines()) if m]


def test_a_logged_run_reports_as_it_goes_says_where_ctrl_c_stopped_it_and_prints_whole_tables(tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        command(run_dir, held=True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=environment(),
    )
    seen: list[str] = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "base stage: started" in line:
                # Written as the base stage starts: the run has not even written its results yet.
                assert not (run_dir / "results.json").exists(), "the line came at the run's end, not the phase's start"
            if "task 2/2 count: started" in line:
                process.send_signal(signal.SIGINT)
                break
        rest, errors = process.communicate(timeout=300)
    finally:
        process.kill()
    log = "".join(seen) + rest
    assert process.returncode == 130, log + errors
    assert ("base stage", "started") in phases(log) and ("base stage", "done") in phases(log)
    assert [p for p in phases(log) if p[0].startswith("task")][:3] == [
        ("task 1/2 color", "started"), ("task 1/2 color", "done"), ("task 2/2 count", "started"),
    ]
    committed = json.loads((run_dir / "results.json").read_text())["rows"]
    said = re.fullmatch(r"interrupted after task (\d)/2 \((\w+)\); run the same command to resume\n", errors)
    assert said, errors
    assert int(said[1]) == len(committed) and said[2] == committed[-1]["after"], "it names the last committed task"

    # The same command resumes; its output, to a file this time, ends with the whole tables.
    log_file = tmp_path / "run.log"
    with open(log_file, "w", encoding="utf-8") as out:
        done = subprocess.run(
            command(run_dir), stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=environment(), timeout=300,
        )
    log = log_file.read_text(encoding="utf-8")
    assert done.returncode == 0, log + done.stderr
    assert f"resuming after task {len(committed)}/2" in log
    assert ("task 2/2 count", "started") in phases(log) and ("task 2/2 count", "done") in phases(log)
    assert "…" not in log, "no table is cut"
    for text in (log, (run_dir / "summary.txt").read_text(encoding="utf-8")):
        header = next(line for line in text.splitlines() if re.match(r"┃ after\s+┃", line))
        assert [cell.strip() for cell in header.strip("┃").split("┃")] == ["after", "color", "count", "arithmetic*"]
        rows = [line for line in text.splitlines() if re.match(r"│ (zero-shot|color|count)\s+│", line)]
        assert len(rows) == 3 and all(len(row.split("│")) == 6 for row in rows), rows
        assert max(len(line) for line in text.splitlines()) > NARROW
        assert re.search(r"final_average_accuracy\s+│\s+\d+\.\d", text)
