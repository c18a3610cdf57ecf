"""Live logging of a run through accelerate's trackers (TensorBoard, Weights & Biases); optional.

mcit's own record is the run directory; trackers mirror it as the run goes, for people who
watch runs in those tools. accelerate's tracker classes are used as they are (their
``start`` / ``log`` / ``finish``), so the integrations stay theirs. Logged: the training loss
each time the loop reads it back (every ``train.loss_every`` optimizer steps and at the last
step of each task; x axis: optimizer
steps over the whole run), and after every step of the stream its scores, the run's metrics
so far and its costs (x axis: the step number). A tracker whose package is missing is
refused before anything is written.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from mcit.errors import UserError

# name -> (module that must be importable, extra to install)
PACKAGES = {"tensorboard": ("tensorboard", "mcit[tensorboard]"), "wandb": ("wandb", "mcit[wandb]")}
LOGS_DIR = "logs"


def check_trackers(names: list[str]) -> None:
    """Raise UserError (one line) for a tracker whose package is not installed."""
    for name in names:
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"tracker {name!r} needs the {module} package: pip install \"{extra}\"")


def _numbers(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    return {
        f"{prefix}/{key}": float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class RunTrackers:
    """The configured trackers of one run (none: every call does nothing)."""

    def __init__(self, names: list[str], run_dir: Path, run_name: str, config: dict[str, Any]):
        self.trackers = []
        if names:
            from accelerate.tracking import TensorBoardTracker, WandBTracker

            made = {"tensorboard": lambda: TensorBoardTracker(run_name, Path(run_dir) / LOGS_DIR),
                    "wandb": lambda: WandBTracker(run_name, dir=str(run_dir), config=config)}  # fmt: skip
            for name in names:
                tracker = made[name]()
                tracker.start()
                self.trackers.append(tracker)

    def _log(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def train_loss(self, global_step: int, loss: float) -> None:
        """A training loss the loop read back, at its optimizer step over the whole run."""
        if self.trackers and math.isfinite(loss):
            self._log({"train/loss": loss}, global_step)

    def step_done(self, number: int, row: dict[str, Any], metrics: dict[str, Any]) -> None:
        if not self.trackers:
            return
        costs = {k: row.get(k) for k in ("train_seconds", "eval_seconds", "peak_host_mb", "peak_gpu_mb", "final_loss")}
        self._log({**_numbers("score", row["scores"]), **_numbers("metric", metrics), **_numbers("cost", costs)}, number)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
