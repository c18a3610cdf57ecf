"""`mcit select` and `mcit data check`: work on data files before (or instead of) training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mcit.cli.common import app, console, progress_bars, quiet_libraries, say, split_args, user_errors
from mcit.errors import UserError

data_app = typer.Typer(add_completion=False, rich_markup_mode=None, help="Check a benchmark's data files before spending compute on them.")
app.add_typer(data_app, name="data")


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
    from mcit.atomic_files import atomic_write_json
    from mcit.config import parse_override
    from mcit.run_setup import quiet_transformers
    from mcit.selection.pool_file import select_pool

    options = {}
    for text in option or []:
        keys, value = parse_override(text)
        options[".".join(keys)] = value
    quiet_libraries()
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


@data_app.command("check")
@user_errors
def data_check(
    args: Annotated[Optional[list[str]], typer.Argument(help="CONFIG.yaml [key=value ...]: a 'files' or 'pool_files' benchmark (any benchmark with --model)")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Manifest of sizes and SHA-256 of every data file and image: written if absent, else verified.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Also score this model (directory, peft adapter or 'tiny') on every evaluation set with its images, blank ones and other samples' ones, and flag the tasks it answers without them.")] = None,
    image_threshold: Annotated[Optional[float], typer.Option(help="With --model: flag a task whose real score exceeds its blank or shuffled score by less than this many points (default 5).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="With --model: write the image check to this JSON file; a directory (a run directory) gets image_check.json, which `mcit report` shows.")] = None,
) -> None:
    """Read every record and decode every image of a benchmark's files; count them; check a manifest.

    With --model, also check that the evaluation sets need their images (mcit.image_reliance).
    """
    from mcit.benchmarks.data_check import FILE_BENCHMARKS
    from mcit.config import load_config

    config_path, overrides = split_args(args or [])
    config = load_config(config_path, overrides)
    if manifest is not None and manifest.is_dir():
        raise UserError(f"--manifest {manifest} is a directory; give a JSON file path")
    if model is None and (out is not None or image_threshold is not None):
        raise UserError("--out and --image-threshold belong to the image check: give --model too")
    if image_threshold is not None and not 0 <= image_threshold <= 100:
        raise UserError(f"--image-threshold {image_threshold:g}: give points between 0 and 100")
    if model is None or manifest is not None or config.benchmark.name in FILE_BENCHMARKS:
        _check_files(config, manifest)
    else:
        say(f"benchmark {config.benchmark.name!r} is generated, not read from files: only the image check runs")
    if model is not None:
        _check_images(config, model, image_threshold, out)


def _check_files(config, manifest: Path | None) -> None:
    from mcit.benchmarks.data_check import check_data

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


def _check_images(config, model: str, threshold_points: float | None, out: Path | None) -> None:
    """Score ``model`` with real, blank and shuffled images; print the table and a line per flagged task."""
    from mcit.atomic_files import atomic_write_json
    from mcit.image_reliance import DEFAULT_THRESHOLD, check_model_images, image_check_path
    from mcit.report.image_check import COLUMNS, image_check_notes, image_check_rows, image_check_summary
    from mcit.report.tables import one_decimal
    from mcit.run_setup import quiet_transformers

    path = image_check_path(out) if out is not None else None
    quiet_libraries()
    quiet_transformers()
    with progress_bars() as phase:
        threshold = DEFAULT_THRESHOLD if threshold_points is None else threshold_points / 100
        result = check_model_images(config, model, threshold, phase)
    table = Table(title="Is the image needed? Scores (%)", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("task", "flag") else "right")
    for row in image_check_rows(result):
        table.add_row(*["-" if v is None else one_decimal(v) if isinstance(v, float) else v for v in row.values()])
    console.print(table)
    for flagged, line in image_check_notes(result):
        console.print(f"[yellow]{'flag' if flagged else 'note'}[/]: {escape(line)}", highlight=False, soft_wrap=True)
    say(image_check_summary(result))
    if path is not None:
        atomic_write_json(path, result)
        say(f"image check: {path}")
