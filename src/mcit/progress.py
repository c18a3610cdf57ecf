"""What a command shows while it works: progress bars on a terminal, plain lines in a log.

A run's output often goes to a file (``mcit run > run.log``, a batch job). Rich's live bars
draw nothing there until the command ends, so when the output is not a terminal
:func:`show_progress` prints a timestamped line as each phase starts and ends, and one every
few percent of a long phase, as the work happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# ``phase(description, total) -> advance(n)``: what the runner, selection and data check call.
Phase = Callable[[str, int], Callable[[int], None]]

# A log line inside a phase every this many percent, and no more often than every this many seconds,
# so a 20-minute phase writes about twenty lines and a few-second one only its start and end.
EVERY_PERCENT = 5
AT_MOST_EVERY_SECONDS = 10.0


def _clock_time() -> str:
    return time.strftime("%H:%M:%S")


@dataclass
class _OpenPhase:
    description: str
    total: int
    started: float
    last_line: float  # when this phase last wrote a line
    next_percent: float  # the next progress line waits for this percentage
    done: int = 0


class PhaseLines:
    """Progress as plain lines: each phase's start, its progress every few percent, its end.

    Phases run one after another: a new phase (or :meth:`close`) ends the open one, which says
    "stopped" where it did not reach its total (an interrupted run shows where it was).

    Args:
        write: Prints one line.
        every_percent: A progress line when the count passes a multiple of this percentage ...
        at_most_every: ... and at least this many seconds passed since the phase's last line.
        clock: Seconds, for elapsed times (time.monotonic; tests pass their own).
        wall_time: The time of day that starts each line.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        every_percent: float = EVERY_PERCENT,
        at_most_every: float = AT_MOST_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_time: Callable[[], str] = _clock_time,
    ) -> None:
        self._write, self._every, self._at_most_every = write, every_percent, at_most_every
        self._clock, self._wall_time = clock, wall_time
        self._open: _OpenPhase | None = None

    def _line(self, text: str) -> None:
        self._write(f"{self._wall_time()} {text}")

    def phase(self, description: str, total: int) -> Callable[[int], None]:
        """Start a phase of ``total`` units (steps, samples); returns ``advance(n)``."""
        self.close()
        now = self._clock()
        phase = self._open = _OpenPhase(description, total, now, now, self._every)
        self._line(f"{description}: started, {total} to do")

        def advance(count: int) -> None:
            if self._open is not phase:  # a later phase has begun; this one was reported ended
                return
            phase.done += count
            if phase.done >= total:
                self.close()
                return
            percent = 100 * phase.done / total
            now = self._clock()
            if percent >= phase.next_percent and now - phase.last_line >= self._at_most_every:
                elapsed = now - phase.started
                left = elapsed * (total - phase.done) / phase.done
                self._line(
                    f"{description}: {phase.done}/{total} ({percent:.0f}%), {elapsed:.1f} s, about {left:.0f} s left"
                )
                phase.last_line = now
                phase.next_percent = (percent // self._every + 1) * self._every

        return advance

    def close(self) -> None:
        """End the open phase, if any, with its count and time."""
        phase, self._open = self._open, None
        if phase is None:
            return
        elapsed = self._clock() - phase.started
        if phase.done >= phase.total:
            self._line(f"{phase.description}: done, {phase.done}/{phase.total} in {elapsed:.1f} s")
        else:
            self._line(f"{phase.description}: stopped at {phase.done}/{phase.total} after {elapsed:.1f} s")


@contextmanager
def _bars(console: Console, keep: bool) -> Iterator[Phase]:
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    )
    with Progress(*columns, console=console, transient=not keep) as bars:

        def phase(description: str, total: int) -> Callable[[int], None]:
            if not keep:
                for task in list(bars.tasks):
                    bars.remove_task(task.id)
            task_id = bars.add_task(description, total=total)
            return lambda advance: bars.advance(task_id, advance)

        yield phase


@contextmanager
def show_progress(console: Console, keep: bool = True) -> Iterator[Phase]:
    """Yields ``phase(description, total) -> advance(n)``: rich bars on a terminal, else :class:`PhaseLines`.

    Args:
        console: Where progress goes.
        keep: Bars only: keep every phase's bar (``False``: only the current one shows; a
            sweep has too many phases to keep).
    """
    if console.is_terminal:
        with _bars(console, keep) as phase:
            yield phase
        return
    lines = PhaseLines(lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True))
    try:
        yield lines.phase
    finally:
        lines.close()
