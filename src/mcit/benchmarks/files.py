"""Your own data as a benchmark: a task stream ('files') or a data pool ('pool_files').

Each task names its data files (see :class:`mcit.config.FileTaskConfig`), relative to
``benchmark.root``::

    benchmark:
      name: files
      root: /data/mystream
      tasks:
        - {name: textvqa, train: textvqa/train.json, eval: textvqa/val.json, scorer: vqa}
      eval_only:
        - {name: text_skill, eval: text/val.json, scorer: exact}

The config checks that every file exists (``mcit validate`` does too); building the benchmark
reads and checks every record and image before any training (file, record, field and how
many other records share the problem). Samples hold image paths; pixels are decoded when a
batch is collated.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from mcit.benchmarks.base import BENCHMARKS, Benchmark, PoolStream, Stream
from mcit.data.answer_files import AnswerTable
from mcit.data.layouts import is_dataset_folder
from mcit.data.llava_json import LlavaDataset
from mcit.data.sample import Sample, Subset, Task
from mcit.errors import UserError
from mcit.seeds import derive_seed

logger = logging.getLogger(__name__)

# The tiny model's tokenizer is trained on at most this many samples' text per file.
_CORPUS_PER_FILE = 5000


def _sample(dataset: Sequence[Sample], limit: int | None, seed: int, *key: str) -> Sequence[Sample]:
    """Every sample, or a seeded random subset of ``limit`` (kept in file order)."""
    if limit is None or limit >= len(dataset):
        return dataset
    rng = random.Random(derive_seed(seed, "files", *key))
    return Subset(dataset, sorted(rng.sample(range(len(dataset)), limit)))


def _path(config, relative: str) -> Path:
    return Path(config.root) / relative


def task_file(config, task, which: str) -> tuple[Path, list[Path]]:
    """The task's ``which`` ("train" or "eval") data file and the folders its image paths may be relative to.

    A task's ``images`` wins, then ``benchmark.images``; with neither, the stream's root and
    then the data file's own folder (the first that has the file is taken).
    """
    path = _path(config, getattr(task, which))
    chosen = task.images if task.images is not None else config.images
    return path, [_path(config, chosen)] if chosen is not None else [Path(config.root), path.parent]


def load_task_file(config, task, which: str, **options) -> LlavaDataset:
    """The task's ``which`` ("train" or "eval") file as a dataset, with the task's reading options."""
    answers = None
    if which == "eval" and task.answers_file is not None:
        answers = AnswerTable(_path(config, task.answers_file), task.answers_format, task.answer_key)
    path, images = task_file(config, task, which)
    return LlavaDataset(
        path, images, template=task.template, answer_key=task.answer_key, answers=answers,
        image_template=task.image_template, unique_ids=which == "train", **options,
    )  # fmt: skip


def _load(config, task, which: str) -> Sequence[Sample]:
    dataset = load_task_file(config, task, which)
    for note in file_notes(task, which, dataset):
        logger.warning("note: %s", note)
    return dataset


def file_notes(task, which: str, dataset: LlavaDataset) -> list[str]:
    """What the user should know about how a file was read (also printed by `mcit data check`)."""
    notes = [f"task {task.name!r}: {note}" for note in dataset.notes]
    if dataset.unanswered:
        total = len(dataset) + dataset.unanswered
        notes.append(
            f"task {task.name!r}: {dataset.unanswered} of {total} {which} records found no answer in {task.answers_file} and are left out"
        )
    return notes


def _read(config, task, seed: int, train: bool) -> Task:
    train_data = _sample(_load(config, task, "train"), config.train_per_task, seed, task.name, "train") if train else []
    eval_data = [] if task.eval is None else _sample(_load(config, task, "eval"), config.eval_per_task, seed, task.name, "eval")
    return Task(
        task.name, train_data, eval_data, scorer=task.scorer, max_new_tokens=task.max_new_tokens, paper_scorer=task.paper_scorer
    )


def _corpus(tasks: list[Task]) -> list[str]:
    """Text of the first samples of every file (for training a tiny model's tokenizer)."""
    text = []
    for task in tasks:
        for samples in (task.train, task.eval):
            for index in range(min(len(samples), _CORPUS_PER_FILE)):
                text.extend(part for turn in samples[index].turns for part in turn)
    return text


def files(config, seed: int) -> Stream:
    """The stream's tasks and evaluation-only tasks, read from their files."""
    tasks = [_read(config, task, seed, train=True) for task in config.tasks]
    eval_only = [_read(config, task, seed, train=False) for task in config.eval_only]
    return Stream(tasks, eval_only, None, _corpus(tasks + eval_only))


def pool_files(config, seed: int) -> PoolStream:
    """The pool's datasets (their training files) and one evaluation column per eval_only task.

    A dataset's ``eval`` file, if given, is evaluated as a column too (the skills a user
    cares about are the columns; samples need no hidden skill label).
    """
    datasets = [_read(config, task, seed, train=True) for task in config.tasks]
    columns = [Task(t.name, [], t.eval, t.scorer, t.max_new_tokens, paper_scorer=t.paper_scorer) for t in datasets if t.eval]
    columns += [_read(config, task, seed, train=False) for task in config.eval_only]
    datasets = [Task(t.name, t.train, []) for t in datasets]
    return PoolStream(datasets, columns, None, _corpus(datasets + columns))


def check_files(config, needs_eval: bool = True) -> None:
    """Each task is a file task with the files its role needs, and every named file exists.

    Raises:
        UserError: Naming the task, the missing field or the missing file.
    """
    for entry in config.tasks + config.eval_only:
        if isinstance(entry, str):
            raise UserError(
                f"benchmark {config.name!r} takes each task as a mapping of its files "
                f"(name, train, eval, scorer), not a name (got {entry!r})"
            )
    for task in config.tasks:
        if task.train is None:
            raise UserError(f"task {task.name!r} has no train file")
        if needs_eval and task.eval is None:
            raise UserError(f"task {task.name!r} has no eval file (each task of the stream is evaluated after every step)")
    if not needs_eval and not any(task.eval for task in config.tasks + config.eval_only):
        raise UserError("the pool has nothing to evaluate: give its datasets eval files, or add eval_only tasks")
    for task in config.eval_only:
        if task.train is not None:
            raise UserError(f"eval_only task {task.name!r} is never trained: remove its train file")
        if task.eval is None:
            raise UserError(f"eval_only task {task.name!r} has no eval file")
    missing = []
    for task in config.tasks + config.eval_only:
        for which in ("train", "eval", "images", "answers_file"):
            relative = getattr(task, which)
            if relative is None:
                continue
            path = _path(config, relative)
            if which == "images" and not path.is_dir():
                missing.append(f"task {task.name!r}: images folder {path} does not exist")
            elif which in ("train", "eval") and path.is_dir() and not is_dataset_folder(path):
                missing.append(f"task {task.name!r}: {which} {path} is a folder, not a data file or a dataset saved with save_to_disk")
            elif which != "images" and not path.exists():
                missing.append(f"task {task.name!r}: {which} file {path} does not exist")
    if config.images is not None and not _path(config, config.images).is_dir():
        missing.append(f"benchmark images folder {_path(config, config.images)} does not exist")
    if missing:
        more = f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]} (paths are relative to {config.root}{more})")


BENCHMARKS.register("files", help="Your own task stream: LLaVA-format train/eval files per task (see docs/own-model-and-data.md)")(
    Benchmark(files, "stream", check=check_files)
)
BENCHMARKS.register("pool_files", help="Your own data pool: one training file per arriving dataset, eval files as columns")(
    Benchmark(pool_files, "pool", check=lambda config: check_files(config, needs_eval=False))
)
