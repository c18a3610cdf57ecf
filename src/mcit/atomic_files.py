"""Files written atomically: a reader (or a run killed at any instant) sees the old content or the new, never half.

Every write goes to a temporary name in the same directory (``.<name>.<pid>.<random>.tmp``:
the pid lets :meth:`mcit.store.RunStore.clean_partial` tell a dead writer's leftovers from a
live one's), is fsynced and renamed onto its final name, and the directory is fsynced so the
rename is durable.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(directory: Path) -> None:
    """Persist a rename: the new directory entry is only durable once the directory is synced."""
    # Some platforms/filesystems cannot open or fsync a directory; nothing better to do there.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it onto ``path``."""
    # Same directory as the target, so os.replace is a rename within one filesystem;
    # the pid in the name lets clean_partial tell a dead writer's leftovers from a live one.
    prefix = f".{path.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results should read like any file
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # data on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` (parent must exist); readers see the old or the new content."""
    write_atomically(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    """Atomically write ``text`` as UTF-8 (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _finite_or_none(obj: Any) -> Any:
    """Replace NaN/inf floats by None recursively (tuples become lists), for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Atomically write ``obj`` as strict JSON (indent 2); NaN and infinities become ``null``.

    Metrics such as forgetting are NaN when undefined; ``null`` keeps the file readable by
    any JSON parser, unlike Python's non-standard ``NaN`` token.
    """
    text = json.dumps(_finite_or_none(obj), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
