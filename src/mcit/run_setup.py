"""What a run needs around its steps: the CLI's progress callbacks, the record of the environment,
the checks of its run directory, the configured method chain, and what Ctrl-C tells the user."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mcit.config import RunConfig
from mcit.run_changes import check_folder, differences
from mcit.store import RunStore
from mcit.strategies import STRATEGIES, Strategy, StrategyChain


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress; all optional."""

    phase: Callable[[str, int], Callable[[int], None]] = lambda description, total: (lambda advance: None)
    message: Callable[[str], None] = lambda text: None
    parameters: Callable[[list[dict[str, Any]]], None] = lambda rows: None


def quiet_transformers() -> None:
    """Silence transformers' own load/save bars and warnings; the runner reports progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def environment(device: torch.device, processes: int = 1) -> dict[str, Any]:
    """What a rerun needs besides config.yaml: package versions, platform, device, threads."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("mcit", "torch", "transformers", "peft", "tokenizers", "safetensors", "pillow", "numpy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "processes": processes,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "packages": packages,
    }


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message names the last committed step, after which a rerun resumes."""


def interrupted_message(results: dict[str, Any] | None) -> str:
    """What to tell a user who stopped a run (Ctrl-C): the last committed step, and that rerunning resumes."""
    results = results or {}
    rows = results.get("rows") or []
    label = "step" if results.get("scenario") == "pool" else "task"
    if not rows:
        return f"interrupted before the first {label} finished; run the same command to resume"
    total = len(results.get("tasks") or results.get("datasets") or [])
    return f"interrupted after {label} {len(rows)}/{total} ({rows[-1]['after']}); run the same command to resume"


def check_run_directory(store: RunStore, resolved: dict[str, Any], force: bool = False) -> None:
    """Refuse, reading only, a run directory that cannot be written, is a folder of other things, or holds
    a run that the new config would change the results of (:mod:`mcit.run_changes`).

    Args:
        store: The run directory.
        resolved: The resolved config of the run about to start (``config_to_dict``).
        force: Write into a folder that holds no run, and resume a run with results-changing
            settings or changed data files anyway (``--force``; the changes are recorded).

    Raises:
        UserError: The directory cannot be created or written; it is a non-empty folder
            without a run; its run differs in a setting that changes results (each named
            with its old and new value) or in a data file.
    """
    store.check_usable()
    check_folder(store.run_dir, force)
    differences(store, resolved, force)


def build_strategy(config: RunConfig) -> StrategyChain:
    """The configured methods as one chain (options validated by each method's model)."""
    chain = []
    for method in config.method:
        strategy_class: type[Strategy] = STRATEGIES.get(method.name)
        chain.append((method.name, strategy_class(strategy_class.options_class(**method.options()))))
    return StrategyChain(chain)
