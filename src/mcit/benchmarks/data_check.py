"""``mcit data check``: every file and image of a file benchmark, read and decoded, summarised.

What it checks, before any model is loaded: the config's files exist; every record parses
(the file layouts of :mod:`mcit.data.layouts`, the record layouts of :mod:`mcit.data.records`);
ids are unique within a training file; every image a record names exists and decodes fully.
Any failure is one line naming the first problem and how many other records share it. It
reports, per file: the layout it was read as, records, records with images, text-only records,
distinct images, how many records repeat an earlier record's id (allowed in evaluation files,
where a record is its position), and per task how many evaluation ids also appear in its
training file (a sign of leakage; the check does not refuse it). Notes say how many
evaluation records found no answer in an answers file (they are left out) and which folder
was taken where an image path named a file in two. With a manifest it hashes every data file
and image, writing the manifest the first time and verifying it later.

``mcit run`` makes the same record and image checks when it builds the stream (with PIL's
``verify`` instead of a full decode, which is faster), before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.atomic_files import atomic_write_json
from mcit.benchmarks.files import file_notes, load_task_file
from mcit.data.llava_json import LlavaDataset
from mcit.data.manifest import build_manifest, describe_differences, differences, read_manifest
from mcit.errors import UserError

Phase = Callable[[str, int], Callable[[int], None]]
FILE_BENCHMARKS = ("files", "pool_files")


@dataclass(frozen=True)
class FileReport:
    """What one data file holds."""

    task: str
    role: str  # "train" or "eval"
    path: Path
    records: int
    image_records: int
    text_only: int
    images: int  # distinct image files, plus images stored in a dataset
    eval_ids_in_train: int | None = None  # for an eval file: how many of its ids its task's train file has
    layout: str = ""  # what the file was read as ("JSON Lines", "parquet", ...)
    repeated_ids: int = 0  # records whose id an earlier record of the file has


@dataclass(frozen=True)
class DataReport:
    root: Path
    files: list[FileReport]
    images: int  # distinct image files over all the files, plus images stored in datasets
    manifest: str | None = None  # what was done with the manifest, for the summary line
    notes: list[str] = field(default_factory=list)  # records left out without answers, ambiguous image paths

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "task": f.task, "role": f.role, "file": str(f.path.relative_to(self.root) if f.path.is_relative_to(self.root) else f.path),
                "layout": f.layout, "records": f.records, "with images": f.image_records, "text-only": f.text_only,
                "images": f.images, "repeated ids": f.repeated_ids,
                "eval ids in train": "" if f.eval_ids_in_train is None else f.eval_ids_in_train,
            }
            for f in self.files
        ]  # fmt: skip


def check_data(benchmark, manifest: Path | None = None, phase: Phase | None = None) -> DataReport:
    """Read and decode every file of ``benchmark`` (a :class:`~mcit.config.BenchmarkConfig`).

    Raises:
        UserError: The first problem found (one line), or the manifest's differences.
    """
    if benchmark.name not in FILE_BENCHMARKS:
        raise UserError(f"benchmark {benchmark.name!r} is generated, not read from files: `mcit data check` reads {' and '.join(FILE_BENCHMARKS)} benchmarks")
    root = Path(benchmark.root)
    entries = [(task, role) for task in benchmark.tasks + benchmark.eval_only for role in ("train", "eval") if getattr(task, role)]
    advance = phase("reading and decoding data files", len(entries)) if phase else None
    reports, datasets, notes = [], [], []
    train_ids: dict[str, set[str]] = {}
    for task, role in entries:
        dataset = load_task_file(benchmark, task, role, decode_images=True)
        path = dataset.path
        datasets.append(dataset)
        notes += file_notes(task, role, dataset)
        overlap = None
        if role == "train":
            train_ids[task.name] = set(dataset.source_ids)
        elif task.name in train_ids:
            overlap = sum(1 for i in dataset.source_ids if i in train_ids[task.name])
        reports.append(FileReport(
            task.name, role, path, len(dataset), len(dataset) - dataset.text_only, dataset.text_only,
            len(dataset.image_files) + dataset.stored_images, overlap, dataset.layout, dataset.repeated_ids,
        ))  # fmt: skip
        if advance:
            advance(1)
    images = len({image for dataset in datasets for image in dataset.image_files}) + sum(d.stored_images for d in datasets)
    answer_paths = {root / t.answers_file for t in benchmark.tasks + benchmark.eval_only if t.answers_file}
    answer_files = {file for path in answer_paths for file in (path.iterdir() if path.is_dir() else [path]) if file.is_file()}
    written = _manifest(manifest, root, datasets, answer_files, phase) if manifest else None
    return DataReport(root, reports, images, written, notes)


def _manifest(path: Path, root: Path, datasets: list[LlavaDataset], extra: set[Path], phase: Phase | None) -> str:
    """Write the manifest if ``path`` does not exist, else verify the data against it."""
    files = {str(f) for d in datasets for f in d.files} | {image for d in datasets for image in d.image_files} | {str(p) for p in extra}
    advance = phase("hashing data files and images", len(files)) if phase else None
    current = build_manifest(root, files, advance)
    if not path.exists():
        atomic_write_json(path, current)
        return f"wrote manifest {path} ({len(files)} files)"
    saved = read_manifest(path)
    problem = describe_differences(path, differences(saved, current), len(saved["files"].keys() | current["files"].keys()))
    if problem:
        raise UserError(problem)
    return f"matches manifest {path} ({len(files)} files)"
