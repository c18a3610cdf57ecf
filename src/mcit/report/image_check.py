"""The image check's table (:mod:`mcit.image_reliance`) for the terminal and the report.

``mcit data check CONFIG --model DIR --out RUN_DIR`` writes ``RUN_DIR/image_check.json``;
:func:`read_image_check` reads it for ``mcit report`` (read only, like the other run files),
and :func:`image_check_rows` gives the rows both ``mcit data check`` and the page
(:func:`mcit.report.html.image_check_section`) show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IMAGE_CHECK_FILE = "image_check.json"  # in a run directory
COLUMNS = ("task", "real", "blank", "shuffled", "drop", "flag")  # scores in points


def read_image_check(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/image_check.json`` (None when absent); ``{"error": reason}`` when it cannot be read as one."""
    path = Path(run_dir) / IMAGE_CHECK_FILE
    if not path.is_file():
        return None
    try:
        check = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return {"error": f"{path} cannot be read: {error}"}
    if not isinstance(check, dict) or not isinstance(check.get("tasks"), list) or not all(isinstance(t, dict) for t in check["tasks"]):
        return {"error": f"{path} is not the result of `mcit data check --model`"}
    return check


def _points(value: Any) -> float | None:
    return 100.0 * value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def flag_label(task: dict[str, Any]) -> str:
    """The flag column: the verdict of a flagged task, in brackets where the check could not decide, else empty."""
    verdict = str(task.get("verdict", ""))
    if task.get("flagged"):
        return verdict
    return "" if verdict == "needs image" else f"({verdict})"


def image_check_rows(check: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task: its name, the real, blank and shuffled scores and the smaller drop (points), its flag."""
    return [
        {"task": str(t.get("task", "?")), **{k: _points(t.get(k)) for k in ("real", "blank", "shuffled", "drop")}, "flag": flag_label(t)}
        for t in check["tasks"]
    ]


def image_check_notes(check: dict[str, Any]) -> list[tuple[bool, str]]:
    """``(flagged, line)``: one line per flagged task (what the flag means for it), then one per task
    the check could not decide (its real score is under the threshold)."""
    tasks = check["tasks"]
    lines = [(True, t) for t in tasks if t.get("flagged")] + [(False, t) for t in tasks if t.get("verdict") == "too low to tell"]
    return [(flagged, str(t.get("explanation", ""))) for flagged, t in lines]


def image_check_summary(check: dict[str, Any]) -> str:
    """What was checked and how: the model, how many tasks are flagged, the threshold, the blank colour, the seed."""
    blank = check.get("blank") or {}
    flagged = sum(1 for t in check["tasks"] if t.get("flagged"))
    threshold = _points(check.get("threshold"))
    return (
        f"image check of {check.get('model', '?')}: {flagged} of {len(check['tasks'])} tasks flagged "
        f"(a drop under {'?' if threshold is None else f'{threshold:g}'} points from the real score to the blank or the shuffled one); "
        f"blank images RGB {tuple(blank.get('rgb') or ())} ({blank.get('from', '?')}), shuffle seed {check.get('seed', '?')}"
    )
