"""Reports of runs: terminal tables (``mcit run``, ``mcit eval``) and the HTML report (``mcit report``).

The terminal tables are re-exported here; :func:`write_report` is imported on first use, so
``mcit run`` does not load matplotlib.
"""

from __future__ import annotations

from typing import Any

from mcit.report.terminal import (
    NEAR_ZERO_SHOT,
    matrix_table,
    metrics_table,
    paper_matrix_table,
    parameter_table,
    result_tables,
    scores_table,
    zero_shot_notes,
)

__all__ = [
    "NEAR_ZERO_SHOT", "matrix_table", "metrics_table", "paper_matrix_table", "parameter_table", "result_tables", "scores_table",
    "write_report",
    "zero_shot_notes",
]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from mcit.report.build import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
