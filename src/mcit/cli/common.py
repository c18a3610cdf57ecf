"""What every ``mcit`` command shares: the app, its consoles, user errors, argument parsing.

A user error (bad config, unknown name, unusable run directory) prints one line and exits
with status 2; no traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from mcit.errors import UserError
from mcit.progress import Phase, show_progress
from mcit.report.terminal import LogConsole

# Help texts are plain text (no rich markup), so "[er, dgg]" and "[key=value ...]" show as written.
app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None, help="Continual instruction tuning of multimodal LLMs.")
console = LogConsole()
errors = LogConsole(stderr=True)
# Messages of the runner name tasks, paths and errors: printed as written, never as markup.
say = functools.partial(console.print, markup=False, highlight=False)


def user_errors(function):
    """Turn :class:`UserError` into one line on stderr and exit status 2; Ctrl-C exits 130 with what the run says (where it stopped)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UserError as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as interrupt:  # printed here, after the progress display has closed
            if str(interrupt):
                errors.print(str(interrupt), markup=False, highlight=False)
            raise typer.Exit(130) from None

    return wrapper


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # deprecations inside peft/transformers


def progress_bars(keep: bool = True) -> AbstractContextManager[Phase]:
    """Progress of the command's phases: bars on a terminal, plain timestamped lines in a log (mcit.progress)."""
    return show_progress(console, keep)


def split_args(args: list[str]) -> tuple[Path | None, list[str]]:
    config_path, overrides = None, []
    for arg in args:
        if "=" in arg:
            overrides.append(arg)
        elif config_path is None:
            config_path = Path(arg)
        else:
            raise UserError(f"unexpected argument {arg!r}: give one CONFIG.yaml and key=value overrides")
    return config_path, overrides


def numbers(text: str, what: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; UserError for a non-integer, a negative order or a repeat."""
    try:
        numbers = [int(item) for item in text.split(",")]
    except ValueError:
        raise UserError(f"--{what} {text!r}: give whole numbers separated by commas (e.g. 0,1,2)") from None
    if len(set(numbers)) != len(numbers):
        raise UserError(f"--{what} {text!r} repeats a value")
    if what == "orders" and min(numbers) < 0:
        raise UserError(f"--orders {text!r}: orders count from 0 (the stream as configured)")
    return numbers


def default_out(config) -> Path:
    """Deterministic run directory, so re-running the same command resumes it."""
    methods = "+".join(m.name for m in config.method)
    if config.pool is not None:
        methods = f"{config.pool.selector.name}-{methods}"
    return Path("runs") / f"{config.benchmark.name}-{methods}-seed{config.seed}"


# The arguments of `mcit run`, shared with `mcit validate` so a command line can be checked before it runs.
RunArgs = Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] [key=value ...] (e.g. train.lr=5e-4)")]
MethodOption = Annotated[Optional[str], typer.Option(help="Method(s), comma-separated (e.g. er or er,ewc); overrides the config.")]
OutOption = Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<benchmark>-<method>-seed<seed>). An existing one is resumed.")]
ForceOption = Annotated[bool, typer.Option(help="Resume a run with settings that change its results, or with changed data files (recorded in its changes.jsonl); write into a non-empty folder that holds no run.")]


def run_config(args: list[str] | None, method: str | None, out: Path | None):
    """The config and the run directory that `mcit run` builds from its arguments."""
    from mcit.config import load_config

    config_path, overrides = split_args(args or [])
    config = load_config(config_path, overrides, method)
    return config, out or default_out(config)
