"""The data files a run read, fingerprinted when it starts, so a resume can tell they changed.

A run of a file benchmark records, for every data file its config names (training and
evaluation records, answers files), the size, the modification time and the SHA-256. On
resume a file whose size differs has changed; one whose size and modification time are
both unchanged has not (nothing is read); one with a new modification time is hashed and
compared, so a copy of the same bytes (``cp`` gives new times) resumes. Images are checked
when the stream is built (they exist and decode) but not fingerprinted here: stat'ing and
hashing every image at each start would cost more than the check is worth; ``mcit data check
--manifest`` hashes them. Names are relative to ``benchmark.root``, as in a manifest
(:mod:`mcit.data.manifest`), so a moved copy compares equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.data.manifest import sha256_file

VERSION = 1
FILE_BENCHMARKS = ("files", "pool_files")


def data_files(benchmark: dict[str, Any]) -> tuple[Path | None, list[Path]]:
    """``(root, files)``: the data files a benchmark section names; ``(None, [])`` for a generated benchmark.

    Args:
        benchmark: The ``benchmark`` section of a resolved config (``config_to_dict``), as a
            run directory's ``config.yaml`` holds it.
    """
    if benchmark.get("name") not in FILE_BENCHMARKS or not benchmark.get("root"):
        return None, []
    root = Path(benchmark["root"])
    files: set[Path] = set()
    for task in [*(benchmark.get("tasks") or []), *(benchmark.get("eval_only") or [])]:
        if isinstance(task, dict):
            for path in (root / task[key] for key in ("train", "eval", "answers_file") if task.get(key)):
                # A Hugging Face dataset saved with save_to_disk is a folder: its files are the data.
                files.update(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else files.add(path)
    return root, sorted(files)


def _name(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix() if path.is_relative_to(root) else path.as_posix()


def _entry(path: Path, stat: os.stat_result, digest: str | None = None) -> dict[str, Any]:
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest or sha256_file(path)}


def fingerprint(root: Path | None, files: list[Path]) -> dict[str, Any]:
    """``{"version", "files": {name: {"bytes", "mtime_ns", "sha256"}}}`` of ``files`` (each is read once)."""
    return {"version": VERSION, "files": {_name(path, root or Path("/")): _entry(path, path.stat()) for path in files}}


@dataclass(frozen=True)
class FileChange:
    """A data file that is not what the run started with."""

    file: str  # relative to benchmark.root
    what: str  # e.g. "1200 -> 800 bytes"

    def describe(self) -> str:
        return f"{self.file} ({self.what})"


def compare(saved: dict[str, Any], root: Path | None, files: list[Path]) -> tuple[list[FileChange], dict[str, Any]]:
    """The files that changed since ``saved``, and the fingerprint of the files now.

    Only files whose modification time moved while their size stayed are hashed (and those
    whose size moved, for the new fingerprint). A file unchanged in content keeps its entry
    with the new time, so it is not hashed again at the next resume.

    Args:
        saved: A fingerprint written by :func:`fingerprint` when the run started.
        root: The benchmark's root now.
        files: The data files the config names now.
    """
    before = saved.get("files") if isinstance(saved.get("files"), dict) else {}
    changes, now = [], {}
    for path in files:
        name = _name(path, root or Path("/"))
        stat = path.stat()
        old = before.get(name)
        if not isinstance(old, dict):
            now[name] = _entry(path, stat)
            changes.append(FileChange(name, "not read when the run started"))
            continue
        if old.get("bytes") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns:
            now[name] = old
            continue
        now[name] = _entry(path, stat)
        if old.get("bytes") != stat.st_size:
            changes.append(FileChange(name, f"{old.get('bytes')} -> {stat.st_size} bytes"))
        elif old.get("sha256") != now[name]["sha256"]:
            changes.append(FileChange(name, "same size, other contents (SHA-256)"))
    changes += [FileChange(name, "no longer read") for name in sorted(before.keys() - now.keys())]
    return changes, {"version": VERSION, "files": now}
