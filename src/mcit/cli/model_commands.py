"""`mcit eval` and `mcit export`: score a model without training, write a run's model for use elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mcit.cli.common import app, console, progress_bars, quiet_libraries, say, split_args, user_errors
from mcit.errors import UserError


@app.command("eval")
@user_errors
def evaluate(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] [key=value ...]: the benchmark whose evaluation sets are scored")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model directory (save_pretrained) or peft adapter directory; default: the config's model.name.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write scores and every prediction to this JSON file.")] = None,
) -> None:
    """Score a model on a benchmark's evaluation sets, without training (one row, the run's scorers)."""
    from mcit.atomic_files import atomic_write_json
    from mcit.config import load_config
    from mcit.eval_run import evaluate_model
    from mcit.report import scores_table
    from mcit.run_setup import quiet_transformers

    config_path, overrides = split_args(args or [])
    config = load_config(config_path, overrides)
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory; give a JSON file path")
    quiet_libraries()
    quiet_transformers()
    with progress_bars() as phase:
        result = evaluate_model(config, model, phase)
    console.print(scores_table(result))
    if out is not None:
        atomic_write_json(out, result)
        say(f"scores and predictions: {out}")


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory of `mcit run`.")],
    out: Annotated[Path, typer.Option(help="New (or empty) directory to write the model to.")],
    task: Annotated[Optional[int], typer.Option(help="Export the model after this task (1-based); default: the newest kept.")] = None,
    merge: Annotated[bool, typer.Option(help="Merge LoRA adapters into the weights and write a plain model (default for runs without LoRA).")] = False,
) -> None:
    """Write a run's model after a task as a model (AutoModelForImageTextToText) or a peft adapter."""
    from mcit.export import export_run
    from mcit.run_setup import quiet_transformers

    if task is not None and task < 1:
        raise UserError("--task counts from 1")
    quiet_libraries()
    quiet_transformers()
    written = export_run(run_dir, out, task, merge)
    how = (
        "AutoModelForImageTextToText.from_pretrained" if written["form"] == "model"
        else "PeftModel.from_pretrained(base, ...) (or mcit eval --model)"
    )
    say(f"{written['form']} after task {written['index'] + 1} ({written['task']}): {out}  [load with {how}]")
