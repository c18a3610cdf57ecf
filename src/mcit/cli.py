"""The ``mcit`` command line: run, sweep, select, eval, export, report, metrics, data check, ls, validate.

A user error (bad config, unknown name, unusable run directory) prints one line and exits
with status 2; no traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mcit.errors import UserError
from mcit.progress import Phase, show_progress
from mcit.report.terminal import SUMMARY_FILE, LogConsole

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


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # deprecations inside peft/transformers


def progress_bars(keep: bool = True) -> AbstractContextManager[Phase]:
    """Progress of the command's phases: bars on a terminal, plain timestamped lines in a log (mcit.progress)."""
    return show_progress(console, keep)


def _split_args(args: list[str]) -> tuple[Path | None, list[str]]:
    config_path, overrides = None, []
    for arg in args:
        if "=" in arg:
            overrides.append(arg)
        elif config_path is None:
            config_path = Path(arg)
        else:
            raise UserError(f"unexpected argument {arg!r}: give one CONFIG.yaml and key=value overrides")
    return config_path, overrides


def _numbers(text: str, what: str) -> list[int]:
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


def _run_config(args: list[str] | None, method: str | None, out: Path | None):
    """The config and the run directory that `mcit run` builds from its arguments."""
    from mcit.config import load_config

    config_path, overrides = _split_args(args or [])
    config = load_config(config_path, overrides, method)
    return config, out or default_out(config)


@app.command()
@user_errors
def run(args: RunArgs = None, method: MethodOption = None, out: OutOption = None, force: ForceOption = False) -> None:
    """Run (or resume) a continual stream and print the accuracy matrix and metrics."""
    from mcit.distributed import world_from_environment
    from mcit.report import parameter_table, result_tables, zero_shot_notes
    from mcit.runner import Progress as RunProgress
    from mcit.runner import Runner

    config, run_dir = _run_config(args, method, out)
    _quiet_libraries()
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
    from mcit.runner import Progress as RunProgress
    from mcit.sweep import plan_sweep, run_sweep, split_methods

    if out is None:
        raise UserError("give the sweep directory with --out DIR")
    config_path, overrides = _split_args(args or [])
    plan = plan_sweep(
        config_path, overrides, split_methods(methods) if methods is not None else None,
        _numbers(seeds, "seeds") if seeds is not None else None, _numbers(orders, "orders"), out,
    )
    _quiet_libraries()
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
def select(
    pool: Annotated[Path, typer.Argument(metavar="POOL.json", help="LLaVA conversation JSON (or .jsonl) of the pool.")],
    budget: Annotated[int, typer.Option(help="Samples to select.")],
    model: Annotated[str, typer.Option(help="Local model directory (save_pretrained format) used for features and scores.")],
    out: Annotated[Path, typer.Option(help="Where to write the chosen ids (JSON).")] = Path("selected.json"),
    method: Annotated[str, typer.Option(help="Selector (see `mcit ls`).")] = "lamp",
    option: Annotated[Optional[list[str]], typer.Option(help="Selector option key=value (repeatable), e.g. --option layer=last.")] = None,
    image_root: Annotated[Optional[Path], typer.Option(help="Directory the records' image paths are relative to (default: the JSON file's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice of the selector.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda[:i].")] = "cpu",
) -> None:
    """Select a budget of a LLaVA-format pool with a model; write ids, clusters and chosen scores."""
    from mcit.config import parse_override
    from mcit.runner import quiet_transformers
    from mcit.selection.pool_file import select_pool
    from mcit.store import atomic_write_json

    options = {}
    for text in option or []:
        keys, value = parse_override(text)
        options[".".join(keys)] = value
    _quiet_libraries()
    quiet_transformers()  # its loading bar would interleave with ours
    with progress_bars() as phase:
        result = select_pool(
            pool, budget, method, model, options=options, image_root=image_root, seed=seed, device=device,
            work_dir=out.parent / f".{out.stem}-features", progress=phase,
        )
    atomic_write_json(out, result)
    table = Table(title=f"{escape(method)}: {len(result['selected'])} of {result['pool_size']} selected in {result['seconds']:.1f} s")
    table.add_column("cluster")
    table.add_column("pool size", justify="right")
    table.add_column("selected", justify="right")
    table.add_column("score")
    clusters = result["summary"].get("clusters", {})
    for cluster, entry in clusters.items():
        table.add_row(str(cluster), str(entry.get("size", "")), str(entry.get("selected", "")), str(entry.get("score", "")))
    if clusters:
        console.print(table)
    else:
        console.print(table.title)
    say(f"ids: {out}")


@app.command("eval")
@user_errors
def evaluate(
    args: Annotated[Optional[list[str]], typer.Argument(help="[CONFIG.yaml] [key=value ...]: the benchmark whose evaluation sets are scored")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model directory (save_pretrained) or peft adapter directory; default: the config's model.name.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write scores and every prediction to this JSON file.")] = None,
) -> None:
    """Score a model on a benchmark's evaluation sets, without training (one row, the run's scorers)."""
    from mcit.config import load_config
    from mcit.eval_run import evaluate_model
    from mcit.report import scores_table
    from mcit.runner import quiet_transformers
    from mcit.store import atomic_write_json

    config_path, overrides = _split_args(args or [])
    config = load_config(config_path, overrides)
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory; give a JSON file path")
    _quiet_libraries()
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
    from mcit.runner import quiet_transformers

    if task is not None and task < 1:
        raise UserError("--task counts from 1")
    _quiet_libraries()
    quiet_transformers()
    written = export_run(run_dir, out, task, merge)
    how = (
        "AutoModelForImageTextToText.from_pretrained" if written["form"] == "model"
        else "PeftModel.from_pretrained(base, ...) (or mcit eval --model)"
    )
    say(f"{written['form']} after task {written['index'] + 1} ({written['task']}): {out}  [load with {how}]")


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories of `mcit run` (complete or not).")],
    out: Annotated[Path, typer.Option(help="Directory to write index.html, its figures and the CSV/LaTeX/JSON exports to.")],
) -> None:
    """Write an HTML report comparing runs: accuracy matrices and curves, metrics, costs; CSV, LaTeX and JSON exports."""
    from mcit.report import write_report

    page = write_report(run_dirs, out)
    say(f"report: {page}", soft_wrap=True)


@app.command("metrics")
@user_errors
def matrix_metrics(
    matrix: Annotated[Path, typer.Argument(metavar="MATRIX.csv|results.json", help="A CSV table (first row the task names; each next row the scores after one task, first cell its name, empty where not evaluated; an optional 'zero-shot' row), or a run's results.json or directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object keyed by the metric names of `mcit ls`: value, unit, convention, and why unavailable.")] = False,
) -> None:
    """The field's metrics of any accuracy matrix (a paper's table, another toolkit's logs), each with its convention."""
    import json

    from mcit.matrix_files import POINTS, read_matrix_file, summary_json
    from mcit.metrics import summarize

    found = read_matrix_file(matrix)
    summary = summarize(found.matrix, found.zero_shot, found.test_sizes)
    if as_json:
        typer.echo(json.dumps(summary_json(summary, found.unit), indent=2))
        return
    unit = "points" if found.unit == POINTS else "fractions"
    title = f"{escape(str(found.path))}: {len(found.tasks)} tasks, {found.not_evaluated} cells not evaluated; metrics in {unit}, like the scores"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("convention (or why unavailable)")
    for name, value in summary.values.items():
        if value is None:
            table.add_row(name, "-", f"unavailable: {summary.unavailable.get(name, 'undefined')}")
        else:
            table.add_row(name, f"{value:.2f}" if found.unit == POINTS else f"{value:.4f}", summary.conventions[name])
    console.print(table)


data_app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Check a benchmark's data files before spending compute on them.")
app.add_typer(data_app, name="data")


@data_app.command("check")
@user_errors
def data_check(
    args: Annotated[Optional[list[str]], typer.Argument(help="CONFIG.yaml [key=value ...]: a 'files' or 'pool_files' benchmark")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Manifest of sizes and SHA-256 of every data file and image: written if absent, else verified.")] = None,
) -> None:
    """Read every record and decode every image of a benchmark's files; count them; check a manifest."""
    from mcit.benchmarks.data_check import check_data
    from mcit.config import load_config

    config_path, overrides = _split_args(args or [])
    config = load_config(config_path, overrides)
    if manifest is not None and manifest.is_dir():
        raise UserError(f"--manifest {manifest} is a directory; give a JSON file path")
    with progress_bars() as phase:
        report = check_data(config.benchmark, manifest, phase)
    rows = report.rows()
    table = Table(title=f"data under {escape(str(report.root))}", title_justify="left")
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("task", "role", "file", "layout") else "right")
    for row in rows:
        table.add_row(*[str(value) for value in row.values()])
    console.print(table)
    leaked = [r for r in report.files if r.eval_ids_in_train]
    for r in leaked:
        console.print(f"[yellow]note[/]: task {escape(repr(r.task))}: {r.eval_ids_in_train} of {r.records} eval ids are also train ids (check for leakage)")
    for note in report.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"[green]ok[/]: {sum(r.records for r in report.files)} records and {report.images} images read and decoded"
                  + (f"; {escape(str(report.manifest))}" if report.manifest else ""), highlight=False)


@app.command("ls")
@user_errors
def list_registered(
    what: Annotated[Optional[str], typer.Argument(help="'benchmarks': the published streams in detail, with the files each expects.")] = None,
) -> None:
    """List scenarios, methods, selectors, benchmarks, published streams, embedded tasks, scorers and metrics."""
    from mcit.benchmarks import BENCHMARKS
    from mcit.benchmarks.published import published_streams
    from mcit.data.synthetic.tasks import TASKS
    from mcit.evaluation.scorers import SCORERS
    from mcit.metrics import METRICS
    from mcit.scenarios import SCENARIOS
    from mcit.selection import SELECTORS
    from mcit.strategies import STRATEGIES

    if what == "benchmarks":
        for name in published_streams():
            _print_stream(name)
        return
    if what is not None:
        raise UserError(f"mcit ls takes no argument or 'benchmarks', got {what!r}")
    for title, registry in (
        ("scenarios", SCENARIOS), ("methods", STRATEGIES), ("selectors (pool scenario)", SELECTORS), ("benchmarks", BENCHMARKS),
        ("embedded tasks", TASKS), ("scorers", SCORERS), ("metrics", METRICS),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        for name in registry:
            table.add_row(name, registry.help(name))
        console.print(table)
    table = Table(title="published streams (mcit run NAME benchmark.root=DATA; details: mcit ls benchmarks)", title_justify="left")
    table.add_column("name")
    table.add_column("tasks, in order")
    for name in published_streams():
        table.add_row(name, " -> ".join(_stream_yaml(name)["tasks"]))
    console.print(table)


def _stream_yaml(name: str) -> dict:
    import yaml

    from mcit.benchmarks.published import published_path

    data = yaml.safe_load(published_path(name).read_text(encoding="utf-8"))
    tasks = data["benchmark"]["tasks"] + list(data["benchmark"].get("eval_only") or [])
    return {"stream": data["stream"], "tasks": [t["name"] for t in data["benchmark"]["tasks"]], "files": tasks}


def _print_stream(name: str) -> None:
    info = _stream_yaml(name)
    stream = info["stream"]
    console.print(f"[bold]{escape(name)}[/]: {escape(stream['title'])}", highlight=False)
    say(f"  paper: {stream.get('paper', '')}\n  data: {stream.get('data', '')}", soft_wrap=True)
    table = Table(title_justify="left", show_edge=False)
    for column in ("task", "train", "eval", "images", "scorer"):
        table.add_column(column)
    for task in info["files"]:
        table.add_row(task["name"], task.get("train") or "-", task.get("eval") or "-", task.get("images") or "(root, else file's folder)", task.get("scorer", "exact_norm"))
    console.print(table)


@app.command()
@user_errors
def validate(args: RunArgs = None, method: MethodOption = None, out: OutOption = None, force: ForceOption = False) -> None:
    """Check `mcit run` with the same arguments, running nothing (names, options, model path, run directory); print the config resolved."""
    import yaml

    from mcit.config import config_to_dict
    from mcit.models.hf import check_model_dir
    from mcit.runner import check_run_directory
    from mcit.store import RunStore

    config, run_dir = _run_config(args, method, out)
    check_model_dir(config.model.name)
    resolved = config_to_dict(config)
    store = RunStore(run_dir, writer=False)
    check_run_directory(store, resolved, force)
    say(yaml.safe_dump(resolved, sort_keys=False))
    command = " ".join([*(args or []), *(["--method", method] if method else [])]) or "the default config"
    console.print(f"[green]ok[/]: {escape(command)} is valid", highlight=False)
    done = len((store.read_results() or {}).get("rows") or [])
    say(f"run directory: {run_dir} ({f'{done} steps finished: run resumes after them' if done else 'new'})")


def main() -> None:
    app(prog_name="mcit")


if __name__ == "__main__":
    sys.exit(main())
