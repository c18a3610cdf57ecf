"""The verdict of a claim from its per-seed figures: a Student-t 95% interval and a rule that reads it.

Every claim is put as one or more *checks* on a per-seed figure, each oriented so that the
claim names a side of a bound:

* ``above`` (an effect in the claimed direction, e.g. "A beats B": the figure is A - B,
  paired by seed, and the bound is 0): **reproduced** when the whole interval is above the
  bound; **not reproduced** when the whole interval is below ``bound + negligible`` (the
  effect is smaller than the smallest one worth claiming, or of the other sign); otherwise
  **inconclusive at this n**.
* ``below`` (something small enough, e.g. "close to joint": the gap, bounded by a margin):
  **reproduced** when the whole interval is below the bound; **not reproduced** when the
  whole interval is above it; otherwise **inconclusive at this n**.

A claim of several checks is reproduced when every check is, not reproduced when one is not,
and inconclusive otherwise. Fewer than two seeds give no interval: inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mcit.report.groups import estimate

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive at this n"
NOT_MEASURED = "not measured"  # no seed has the figure's runs complete
UNDEFINED = "undefined"  # the runs are complete but the figure has no finite value (e.g. a relative gain over bounds of 0)
NEGLIGIBLE = 1.0  # points: the smallest effect an "above" claim must be able to reach to count as present


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and the half-width of its 95% Student-t interval (None below two seeds)."""

    mean: float | None
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def text(self, digits: int = 1) -> str:
        if self.mean is None:
            return "- (n=0)"
        if self.half_width is None:
            return f"{self.mean:.{digits}f} (n={self.n}: no interval)"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f} (n={self.n})"


def interval(values: list[float]) -> Interval:
    """Mean and 95% Student-t half-width of the finite values (the report's :func:`mcit.report.groups.estimate`)."""
    found = estimate([v for v in values if v is not None and math.isfinite(v)])
    return Interval(found.mean, found.half_width, found.n)


@dataclass(frozen=True)
class Check:
    """What the claim says of a per-seed figure: it lies ``above`` or ``below`` ``bound`` (points)."""

    side: Literal["above", "below"]
    bound: float = 0.0
    negligible: float = NEGLIGIBLE

    def describe(self) -> str:
        if self.side == "below":
            return f"< {self.bound:g}"
        shown = f"> {self.bound:g}"
        return shown if self.negligible == NEGLIGIBLE else f"{shown} (an effect below {self.negligible:g} does not count)"

    def verdict(self, found: Interval) -> str:
        """Reproduced, not reproduced or inconclusive at this n, by the rule of the module docstring."""
        if found.n == 0:
            return NOT_MEASURED
        if found.half_width is None:
            return INCONCLUSIVE
        if self.side == "above":
            if found.low > self.bound:
                return REPRODUCED
            if found.high < self.bound + self.negligible:
                return NOT_REPRODUCED
            return INCONCLUSIVE
        if found.high < self.bound:
            return REPRODUCED
        if found.low > self.bound:
            return NOT_REPRODUCED
        return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """One verdict of a claim made of several checks."""
    for missing in (NOT_MEASURED, UNDEFINED):
        if missing in verdicts:
            return missing
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return INCONCLUSIVE
