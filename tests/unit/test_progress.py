"""What a command shows while it works when its output is a log: plain phase lines, whole tables, summary.txt."""

from __future__ import annotations

import io

from rich.table import Table

from mcit.progress import PhaseLines, show_progress
from mcit.report.terminal import LogConsole, summary_text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines_of(clock: FakeClock, **options) -> tuple[PhaseLines, list[str]]:
    written: list[str] = []
    return PhaseLines(written.append, clock=clock, wall_time=lambda: "12:00:00", **options), written


def test_a_phase_writes_its_start_and_its_end_with_count_and_time():
    clock = FakeClock()
    lines, written = lines_of(clock)
    advance = lines.phase("task 1/2 color", 3)
    clock.now = 2.5
    for _ in range(3):
        advance(1)
    assert written == ["12:00:00 task 1/2 color: started, 3 to do", "12:00:00 task 1/2 color: done, 3/3 in 2.5 s"]
    advance(1)  # a late advance of a finished phase writes nothing
    lines.close()
    assert len(written) == 2


def progress_lines(seconds_per_unit: float, every_percent: float, at_most_every: float) -> list[str]:
    """The progress lines of a 100-unit phase (start and end left out)."""
    clock = FakeClock()
    lines, written = lines_of(clock, every_percent=every_percent, at_most_every=at_most_every)
    advance = lines.phase("base stage", 100)
    for _ in range(100):
        clock.now += seconds_per_unit
        advance(1)
    assert written[0].endswith("started, 100 to do")
    assert written[-1].endswith(f"done, 100/100 in {100 * seconds_per_unit:.1f} s")
    return written[1:-1]


def test_a_long_phase_writes_a_line_every_few_percent():
    # Slow (10 s a unit): the time floor lets every line through; one each 10%.
    written = progress_lines(10.0, every_percent=10, at_most_every=10.0)
    assert [line.split(": ", 1)[1].split(",")[0] for line in written] == [f"{n}/100 ({n}%)" for n in range(10, 100, 10)]
    assert written[0] == "12:00:00 base stage: 10/100 (10%), 100.0 s, about 900 s left"


def test_a_fast_phase_writes_no_more_than_a_line_per_interval():
    # 1 s a unit, a line allowed each 1%: the 10-second floor keeps one in ten.
    written = progress_lines(1.0, every_percent=1, at_most_every=10.0)
    assert [line.split(": ", 1)[1].split(",")[0] for line in written] == [f"{n}/100 ({n}%)" for n in range(10, 100, 10)]


def test_a_phase_that_does_not_reach_its_total_says_where_it_stopped():
    clock = FakeClock()
    lines, written = lines_of(clock)
    first = lines.phase("task 2/5 count", 10)
    first(4)
    clock.now = 3.0
    lines.phase("eval after count", 5)  # a new phase ends the open one
    assert written[1] == "12:00:00 task 2/5 count: stopped at 4/10 after 3.0 s"
    first(6)  # the ended phase no longer counts
    lines.close()
    assert written[-1] == "12:00:00 eval after count: stopped at 0/5 after 0.0 s"
    assert len(written) == 4


def test_show_progress_prints_plain_lines_when_the_output_is_not_a_terminal():
    buffer = io.StringIO()
    console = LogConsole(file=buffer, width=80)
    with show_progress(console) as phase:
        advance = phase("zero-shot eval [er, dgg]", 2)
        assert "zero-shot eval [er, dgg]: started, 2 to do" in buffer.getvalue(), "written as the phase starts"
        advance(2)
    assert "zero-shot eval [er, dgg]: done, 2/2 in" in buffer.getvalue()


def test_show_progress_draws_bars_on_a_terminal():
    buffer = io.StringIO()
    console = LogConsole(file=buffer, width=80, force_terminal=True)
    with show_progress(console) as phase:
        phase("base stage", 2)(2)
    assert "started" not in buffer.getvalue() and "base stage" in buffer.getvalue()


def wide_table() -> Table:
    table = Table(title="Accuracy matrix (%)")
    table.add_column("after")
    for name in [f"task-{i}" for i in range(10)]:
        table.add_column(f"{name}[x]", justify="right")
    table.add_row("zero-shot", *["100.0"] * 10)
    return table


def test_log_console_prints_a_wide_table_whole_and_its_brackets_as_written():
    buffer = io.StringIO()
    LogConsole(file=buffer, width=80).print(wide_table())
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) > 80
    assert "…" not in text
    assert all(f"task-{i}[x]" in text for i in range(10))
    row = next(line for line in text.splitlines() if "zero-shot" in line)
    assert row.count("100.0") == 10


def test_log_console_does_not_break_a_long_line_of_text():
    buffer = io.StringIO()
    message = "resuming after task 3/5 (shape) in " + "/a-long-directory" * 10
    LogConsole(file=buffer, width=80).print(message, markup=False)
    assert buffer.getvalue() == message + "\n"


def test_summary_text_holds_the_whole_matrix_and_the_metrics():
    tasks = [f"task{i}" for i in range(8)]
    eval_only = ["compare", "arithmetic"]
    scores = {name: 1.0 for name in tasks + eval_only}
    results = {
        "scenario": "stream", "tasks": tasks, "eval_only": eval_only, "zero_shot": scores,
        "rows": [{"after": name, "scores": scores, "train_seconds": 1.0, "eval_seconds": 0.5} for name in tasks],
        "metrics": {"final_average_accuracy": 1.0},
    }
    text = summary_text(results)
    header = next(line for line in text.splitlines() if "after" in line and "task0" in line)
    assert all(name in header for name in tasks) and "compare*" in header and "arithmetic*" in header
    assert all(line.count("100.0") == 10 for line in text.splitlines() if line.startswith("│ task"))
    assert "final_average_accuracy" in text and "stream wall time (s)" in text
    assert "…" not in text
