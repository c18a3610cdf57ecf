"""Crash-safe persistence for a run directory: config, results, checkpoints, lock.

A run can be killed at any instant and a re-run must resume without reading a half-written
file, so every file is written atomically (:mod:`mcit.atomic_files`) and a checkpoint (a
state tree, :mod:`mcit.state_tree`) is a whole directory renamed into place, hence complete
iff it exists under its final name. Run files are untrusted: tensors only via safetensors
(never pickle), the rest JSON/YAML (``safe_load``). Layout: ``config.yaml``,
``results.json``, ``.lock`` and ``checkpoints/<name>/{tensors.safetensors,tree.json,meta.json}``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from mcit.atomic_files import atomic_write_json, atomic_write_text, fsync_dir
from mcit.errors import UserError
from mcit.state_tree import load_state_tree, save_state_tree

BASE_DIR = "base_model"  # the run's base-stage model, saved with save_pretrained
CONFIG_FILE = "config.yaml"  # the run's resolved config
SWEEP_FILE = "sweep.json"  # a sweep directory's grid and cells (mcit.sweep)
STEP_PREFIX = "task-"  # checkpoints/task-001, task-002, ...: the runner's checkpoint after each committed step
META_FILE = "meta.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# Prefixes of transient entries; all start with "." so they never look like a checkpoint.
_TMP, _OLD, _DEL = ".tmp-", ".old-", ".del-"
_held_locks: set[Path] = set()  # locks this process holds, to tell reuse of our pid from nesting


def read_config_file(path: Path) -> dict | None:
    """A run's ``config.yaml``, or None if absent; UserError if it is not a YAML mapping.

    Reads only, like :func:`read_results_file`: shared by :class:`RunStore` and ``mcit report``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"cannot parse {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(config, dict):
        raise UserError(f"{path} does not contain a mapping")
    return config


def read_results_file(path: Path) -> dict | None:
    """A run's ``results.json``, or None if absent; UserError if it is not a JSON object.

    Reads only: :class:`RunStore` (whose constructor tidies the directory) and read-only
    readers such as ``mcit report`` share it.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        results = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"corrupt results file {path}: {e}") from e
    if not isinstance(results, dict):
        raise UserError(f"corrupt results file {path}: not a JSON object")
    return results


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (POSIX signal 0 probes without signalling)."""
    if pid <= 0:  # 0 and negatives address process groups, never a lock owner
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user
        pass
    return True


def _owner_pid(entry_name: str) -> int | None:
    """The pid embedded as the last ``-``/``.`` separated number of a transient entry's name."""
    match = re.search(r"[-.](\d+)(?:\.[^.]*\.tmp)?$", entry_name)
    return int(match.group(1)) if match else None


def _writes(method: Callable) -> Callable:
    """A :class:`RunStore` method that does nothing (and returns ``None``) on a read-only store."""

    @functools.wraps(method)
    def guarded(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs) if self.writer else None

    return guarded


class RunStore:
    """The files of one run directory, written so that a killed run can always resume.

    Constructing a store creates nothing: the directory is created by the first write or by
    :meth:`lock`; an existing one is cleaned of leftovers of interrupted writes (see
    :meth:`clean_partial`). :meth:`check_usable` tells, without writing, whether it can be.

    Args:
        run_dir: The run directory (need not exist yet).
        writer: ``False`` for a read-only view: every method that would write, delete or
            lock does nothing (the processes of a distributed run other than rank 0).
    """

    def __init__(self, run_dir: Path | str, writer: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.writer = writer
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.config_path = self.run_dir / CONFIG_FILE
        self.results_path = self.run_dir / "results.json"
        self.lock_path = self.run_dir / ".lock"
        self.clean_partial()


    def check_usable(self) -> None:
        """Refuse a run directory that cannot be created or written, without writing anything.

        Raises:
            UserError: If the path (or a parent of it) is a file, or the directory (or its
                nearest existing parent, when it does not exist yet) is not writable.
        """
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"run directory {self.run_dir} is a file, not a directory; give another --out")
        existing = self.run_dir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"cannot create run directory {self.run_dir}: {existing} is a file, not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "run directory" if existing == self.run_dir else "parent directory"
            raise UserError(f"cannot write run directory {self.run_dir}: the {what} {existing} is not writable")

    @_writes
    def _create(self) -> None:
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)

    # -- config and results

    @_writes
    def write_config(self, config: dict) -> None:
        """Atomically write ``config.yaml`` (keys in the given order)."""
        self._create()
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict | None:
        """Return the saved config, or None if absent; UserError if not a YAML mapping."""
        return read_config_file(self.config_path)

    @_writes
    def write_results(self, results: dict) -> None:
        """Atomically write ``results.json`` (NaN/inf written as null)."""
        self._create()
        atomic_write_json(self.results_path, results)

    @_writes
    def write_json(self, relative: str, obj: Any) -> Path:
        """Atomically write a JSON file at ``relative`` inside the run directory (e.g. a pool step's selection)."""
        path = self.run_dir / relative
        if not path.resolve().is_relative_to(self.run_dir.resolve()):
            raise ValueError(f"{relative!r} is outside the run directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, obj)
        return path

    def read_results(self) -> dict | None:
        """Return the saved results, or None if absent; UserError if not a JSON object."""
        return read_results_file(self.results_path)

    # -- checkpoints

    def _checkpoint_path(self, name: str) -> Path:
        # Names become directory names: no separators, and no leading "." (transient entries).
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
            raise ValueError(f"invalid checkpoint name {name!r}")
        return self.checkpoints_dir / name

    @_writes
    def save_checkpoint(
        self, name: str, state: dict, meta: dict | None = None, extra: Callable[[Path], Any] | None = None
    ) -> Path:
        """Save a checkpoint atomically, replacing any existing one; returns its directory.

        Written into ``checkpoints/.tmp-<name>-<pid>/``, then renamed to ``checkpoints/<name>``.
        An existing one is renamed aside and deleted only once the new one is in place; if
        the process dies in between, :meth:`clean_partial` restores the old one.

        Args:
            name: Letters, digits, ``_ . -``; not starting with ``.`` or ``-``.
            state: A state tree (see :func:`save_state_tree`).
            meta: Small JSON-able metadata (NaN written as null).
            extra: Writes more files into the checkpoint's directory before it is renamed
                into place (e.g. the model in its standard form), so they appear with it
                atomically and are deleted with it.
        """
        final = self._checkpoint_path(name)
        self._create()
        pid = os.getpid()
        tmp = self.checkpoints_dir / f"{_TMP}{name}-{pid}"
        if tmp.exists():  # our own earlier attempt that raised midway
            shutil.rmtree(tmp)
        aside = None
        try:
            save_state_tree(state, tmp)
            if extra is not None:
                extra(tmp)
            atomic_write_json(tmp / META_FILE, meta or {})
            fsync_dir(tmp)
            if final.exists():
                aside = self.checkpoints_dir / f"{_OLD}{name}-{pid}"
                os.replace(final, aside)
            os.replace(tmp, final)
            fsync_dir(self.checkpoints_dir)
        except BaseException:
            if aside is not None and not final.exists():
                os.replace(aside, final)  # the new one did not make it: keep the old one
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return final

    def load_checkpoint(self, name: str) -> tuple[dict, dict]:
        """Return ``(state, meta)``; UserError if the checkpoint is missing or unreadable."""
        path = self._checkpoint_path(name)
        if not path.is_dir():
            raise UserError(f"checkpoint {path} does not exist")
        try:
            state = load_state_tree(path)
            meta = json.loads((path / META_FILE).read_bytes())
        except Exception as e:  # corrupt or tampered files: one clear line for the user
            raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
        if not isinstance(state, dict) or not isinstance(meta, dict):
            raise UserError(f"cannot read checkpoint {path}: state and meta must be objects")
        return state, meta

    def has_checkpoint(self, name: str) -> bool:
        """Whether a complete checkpoint with this name exists."""
        return self._checkpoint_path(name).is_dir()

    def checkpoint_names(self) -> list[str]:
        """Names of the complete checkpoints, sorted."""
        if not self.checkpoints_dir.is_dir():
            return []
        entries = self.checkpoints_dir.iterdir()
        return sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))

    @_writes
    def delete_checkpoint(self, name: str) -> None:
        """Delete a checkpoint (no-op if absent)."""
        # Renamed away first: a crash mid-rmtree must not leave a partial dir under the name.
        path = self._checkpoint_path(name)
        if not path.exists():
            return
        doomed = self.checkpoints_dir / f"{_DEL}{name}-{os.getpid()}"
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        fsync_dir(self.checkpoints_dir)
        shutil.rmtree(doomed, ignore_errors=True)

    @_writes
    def keep_newest(self, prefix: str, keep: int | None) -> list[str]:
        """Delete all but the ``keep`` newest checkpoints named ``prefix...`` (names sort by age).

        Returns:
            The names deleted (none when ``keep`` is ``None``).
        """
        if keep is None:
            return []
        named = [name for name in self.checkpoint_names() if name.startswith(prefix)]
        doomed = named[: max(0, len(named) - keep)]
        for name in doomed:
            self.delete_checkpoint(name)
        return doomed

    @_writes
    def clean_partial(self) -> None:
        """Remove leftovers of interrupted writes by dead processes.

        Entries owned by another live process are left alone: it may be writing them right
        now (e.g. a second ``mcit run`` on a busy directory, before it fails to lock). An
        aside copy (``.old-*``) whose checkpoint never got replaced is renamed back.
        """
        me = os.getpid()
        for directory in (self.run_dir, self.checkpoints_dir, self.run_dir / "selections"):
            if not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                n = entry.name
                pid = _owner_pid(n)
                if pid is None or (pid != me and _pid_alive(pid)):
                    continue
                if n.startswith(".") and n.endswith(".tmp") and entry.is_file():
                    entry.unlink(missing_ok=True)  # an atomic_write_* temp file
                elif directory != self.checkpoints_dir or not entry.is_dir():
                    continue
                elif n.startswith(_OLD):
                    final = self.checkpoints_dir / n[len(_OLD) :].rsplit("-", 1)[0]
                    if final.exists():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        os.replace(entry, final)
                        fsync_dir(self.checkpoints_dir)
                elif n.startswith((_TMP, _DEL)):
                    shutil.rmtree(entry, ignore_errors=True)

    # -- lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``run_dir/.lock`` (containing our pid) for the duration of the block.

        A lock of a dead process (a killed run) is taken over; so is one with our own pid
        that we do not hold (containers reuse pids across restarts). Two processes taking
        over one stale lock at the same instant is not guarded against.

        Raises:
            UserError: If another live process holds the lock, or this process already does.
        """
        if not self.writer:
            yield
            return
        self._create()
        path = self.lock_path.resolve()
        if path in _held_locks:
            raise UserError(f"run directory {self.run_dir} is already locked by this process")
        for _ in range(10):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    text = path.read_text(encoding="utf-8", errors="replace").strip()
                except FileNotFoundError:
                    continue  # released meanwhile; try again
                # Unparseable content: the owner died between creating and writing the file.
                pid = int(text) if text.isdigit() else None
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    msg = f"run directory {self.run_dir} is in use by process {pid}"
                    raise UserError(msg) from None
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")
                f.flush()
                os.fsync(f.fileno())
            break
        else:
            raise UserError(f"could not lock run directory {self.run_dir}")
        _held_locks.add(path)
        try:
            yield
        finally:
            _held_locks.discard(path)
            with contextlib.suppress(OSError):
                # Only remove it if it is still ours (not taken over by someone else).
                if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
                    path.unlink()


def read_sweep(directory: Path) -> dict[str, Any] | None:
    """``directory/sweep.json``, or None if there is none; UserError if it is not a sweep's.

    Reads only, like :func:`read_results_file`: shared by :mod:`mcit.sweep` and ``mcit report``.
    """
    path = Path(directory) / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    cells = description.get("cells") if isinstance(description, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and {"method", "seed", "order", "path"} <= set(c) for c in cells):
        raise UserError(f"corrupt {path}: not the description of a sweep")
    return description
