"""A manifest of a dataset's files: size and SHA-256 of every data file and image.

Written once (``mcit data check --manifest FILE``) and verified later, so two labs, or one lab
a year apart, can tell whether they ran on the same bytes. Paths are relative to the
benchmark's root, so a copy of the data under another folder verifies the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mcit.errors import UserError

VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(root: Path, paths: Iterable[Path | str], advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``{"version", "files": {relative path: {"bytes", "sha256"}}}`` for ``paths`` (sorted)."""
    files = {}
    for path in sorted({os.path.abspath(p) for p in paths}):
        relative = Path(os.path.relpath(path, root)).as_posix()
        files[relative] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        if advance is not None:
            advance(1)
    return {"version": VERSION, "files": files}


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by :func:`build_manifest`; UserError if it is not one."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"manifest {path}: cannot read it as JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION or not isinstance(manifest.get("files"), dict):
        raise UserError(f"manifest {path}: not an mcit manifest (version {VERSION} with a 'files' table)")
    return manifest


def differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[str]]:
    """Paths whose bytes changed, that the manifest lists but are gone, and that it does not list."""
    old, new = saved["files"], current["files"]
    return {
        "changed": sorted(p for p in old.keys() & new.keys() if old[p] != new[p]),
        "missing": sorted(old.keys() - new.keys()),
        "new": sorted(new.keys() - old.keys()),
    }


def describe_differences(path: Path, found: dict[str, list[str]], total: int) -> str | None:
    """One line for :class:`UserError`, or None when the data matches the manifest."""
    count = sum(len(v) for v in found.values())
    if not count:
        return None
    first_kind = next(kind for kind in ("changed", "missing", "new") if found[kind])
    what = {"changed": "its bytes differ", "missing": "listed but not used or gone", "new": "not in the manifest"}
    counts = ", ".join(f"{len(v)} {k}" for k, v in found.items() if v)
    return (
        f"manifest {path}: {count} of {total} files differ from it ({counts}); "
        f"first: {found[first_kind][0]} ({what[first_kind]})"
    )
