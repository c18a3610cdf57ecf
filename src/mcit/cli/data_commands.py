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
    from mcit.config import parse_override
    from mcit.run_setup import quiet_transformers
    from mcit.selection.pool_file import select_pool
    from mcit.atomic_files import atomic_write_json

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
    args: Annotated[Optional[list[str]], typer.Argument(help="CONFIG.yaml [key=value ...]: a 'files' or 'pool_files' benchmark")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Manifest of sizes and SHA-256 of every data file and image: written if absent, else verified.")] = None,
) -> None:
    """Read every record and decode every image of a benchmark's files; count them; check a manifest."""
    from mcit.benchmarks.data_check import check_data
    from mcit.config import load_config

    config_path, overrides = split_args(args or [])
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
