"""`mcit run`, `mcit sweep` and `mcit validate`: a stream, a grid of streams, and a check of a run's command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mcit.cli.common import (
    ForceOption,
    MethodOption,
    OutOption,
    RunArgs,
    app,
    console,
    numbers,
    progress_bars,
    quiet_libraries,
    run_config,
    say,
    split_args,
    user_errors,
)
from mcit.errors import UserError
from mcit.report.terminal import SUMMARY_FILE


@app.command()
@user_errors
def run(args: RunArgs = None, method: MethodOption = None, out: OutOption = None, force: ForceOption = False) -> None:
    """Run (or resume) a continual stream and print the accuracy matrix and metrics."""
    from mcit.distributed import world_from_environment
    from mcit.report import parameter_table, result_tables, zero_shot_notes
    from mcit.run_setup import Progress as RunProgress
    from mcit.runner import Runner

    config, run_dir = run_config(args, method, out)
    quiet_libraries()
    world = world_from_environment()  # several processes under `accelerate launch`; rank 0 reports
    if not world.is_main:
        Runner(config, run_dir, force=force, world=world).run()
        return
    if world.distributed:
        console.print(f"{world.size} processes, each training on its share of every batch (rank 0 writes)")
    console.print(f"run directory: [bold]{escape(str(run_dir))}[/]")
    with progress_bars() as phase:

        def show_parameters(rows):
            console.print(parameter_table(rows))

        progress = RunProgress(phase=phase, message=say, parameters=show_parameters)
        results = Runner(config, run_dir, progress, force=force, world=world).run()
    for table in result_tables(results):
        console.print(table)
    for note in zero_shot_notes(results):
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    say(f"results: {run_dir / 'results.json'} (as text: {run_dir / SUMMARY_FILE})")


@app.command()
@user_errors
def sweep(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] [key=value ...]: the config every cell shares")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Methods, comma-separated; each a registered name or a YAML flow list: a chain '[er, dgg]', options '[{name: er, buffer_per_task: 50}]' (commas inside [ ] and { } stay in their entry). Default: the config's method.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, comma-separated (e.g. 0,1,2); default: the config's seed.")] = None,
    orders: Annotated[str, typer.Option(help="Task orders, comma-separated: 0 = the stream as configured, K > 0 = a permutation of its tasks seeded by K.")] = "0",
    out: Annotated[Optional[Path], typer.Option(help="Sweep directory: sweep.json and one run directory per cell, seed<S>/order<K>/<method>/. An existing one is resumed.")] = None,
) -> None:
    """Run (or resume) a grid of methods x seeds x task orders, one run directory per cell; print each method's mean and 95% interval."""
    from mcit.distributed import world_from_environment
    from mcit.report.groups import SweepCell, group_table, spread
    from mcit.run_setup import Progress as RunProgress
    from mcit.sweep import plan_sweep, run_sweep, split_methods

    if out is None:
        raise UserError("give the sweep directory with --out DIR")
    config_path, overrides = split_args(args or [])
    plan = plan_sweep(
        config_path, overrides, split_methods(methods) if methods is not None else None,
        numbers(seeds, "seeds") if seeds is not None else None, numbers(orders, "orders"), out,
    )
    quiet_libraries()
    world = world_from_environment()  # several processes under `accelerate launch`; rank 0 reports
    if not world.is_main:
        run_sweep(plan, world=world)
        return
    grid = plan.grid
    console.print(
        f"sweep directory: [bold]{escape(str(plan.out))}[/] ({len(plan.cells)} cells: {len(grid['methods'])} methods x "
        f"{len(grid['seeds'])} seeds x {len(grid['orders'])} orders)", highlight=False,
    )
    for order, tasks in grid["orders"].items():
        say(f"  order {order}: {' -> '.join(tasks)}")

    def show_cell(index: int, cell, status: str) -> None:
        doing = {"complete": "complete, skipped", "resume": "resuming", "run": "running"}[status]
        console.print(f"cell {index + 1}/{len(plan.cells)} [bold]{escape(str(cell.path))}[/]: {doing}", highlight=False)

    with progress_bars(keep=False) as phase:
        outcomes = run_sweep(plan, RunProgress(phase=phase, message=say), show_cell, world)
    groups = group_table([(SweepCell(c.method, c.seed, c.order, plan.out / c.path), r) for c, r in zip(plan.cells, outcomes)])
    table = Table(title="each method: mean ± 95% CI (Student t), points", title_justify="left")
    for title in ("method", "metric", "over seeds", "over orders"):
        table.add_column(title, justify="left" if title in ("method", "metric") else "right")
    for row in groups.rows:
        table.add_row(row["method"], row["metric"], spread(row, "seeds"), spread(row, "orders"))
    console.print(table)
    say(f"sweep: {plan.out / 'sweep.json'} (report: mcit report {plan.out} --out DIR)", soft_wrap=True)


@app.command()
@user_errors
def validate(args: RunArgs = None, method: MethodOption = None, out: OutOption = None, force: ForceOption = False) -> None:
    """Check `mcit run` with the same arguments, running nothing (names, options, model path, run directory); print the config resolved."""
    import yaml

    from mcit.config import config_to_dict
    from mcit.models.hf import check_model_dir
    from mcit.run_setup import check_run_directory
    from mcit.store import RunStore

    config, run_dir = run_config(args, method, out)
    check_model_dir(config.model.name)
    resolved = config_to_dict(config)
    store = RunStore(run_dir, writer=False)
    check_run_directory(store, resolved, force)
    say(yaml.safe_dump(resolved, sort_keys=False))
    command = " ".join([*(args or []), *(["--method", method] if method else [])]) or "the default config"
    console.print(f"[green]ok[/]: {escape(command)} is valid", highlight=False)
    done = len((store.read_results() or {}).get("rows") or [])
    say(f"run directory: {run_dir} ({f'{done} steps finished: run resumes after them' if done else 'new'})")
