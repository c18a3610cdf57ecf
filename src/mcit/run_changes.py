"""What may change when a run directory is resumed, what is refused, and the record of both.

A run directory holds the config its results were made with (``config.yaml``) and, for a
file benchmark, the fingerprint of the data files it read (``data_files.json``). When a run
resumes with another config or other data:

* a difference only in results-neutral settings (:mod:`mcit.config.neutral`) goes on:
  ``config.yaml`` takes the new values (it still describes the results) and the change is
  recorded;
* any other difference, and a data file that changed, is refused with one line naming each
  key with its old and new value (each file with what changed), unless ``--force``: then
  ``config.yaml`` is left as it was, describing the steps already stored, and the change
  is recorded with the step it applies from.

Every change goes to ``changes.jsonl``, one JSON object per resume that changed something,
appended. The config a run goes on with is ``config.yaml`` with every recorded change
applied (:func:`current_config`), so the next resume with the same command is no change.
A folder that is not empty and holds no run is not written into, unless ``--force``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.atomic_files import atomic_write_text
from mcit.config.neutral import Neutral, neutral
from mcit.data.fingerprint import FileChange, compare, data_files, fingerprint
from mcit.errors import UserError
from mcit.store import CONFIG_FILE, RunStore

CHANGES_FILE = "changes.jsonl"  # one JSON object per resume that changed the config or the data
DATA_FILE = "data_files.json"  # the fingerprint of the data files (mcit.data.fingerprint)
# What a run directory holds before its config.yaml is written: the lock, the checkpoint
# folder the lock creates, and temporary files of atomic writes (".name.pid.tmp", ".tmp-...").
_BEFORE_CONFIG = re.compile(r"^(\.lock|checkpoints|\..*\.tmp|\.tmp-.*)$")
_SHOWN = 60  # characters of a value shown in a message


class _Absent:
    """A key one of the two configs does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


@dataclass(frozen=True)
class ConfigChange:
    """One setting (a dotted key of the resolved config) with its stored and its new value."""

    key: str
    old: Any
    new: Any

    @property
    def neutral(self) -> Neutral | None:
        """Why this setting cannot change results, or None when it can."""
        return neutral(self.key)

    def describe(self) -> str:
        return f"{self.key} {_show(self.old)} -> {_show(self.new)}"

    def record(self) -> dict[str, Any]:
        """As a line of ``changes.jsonl`` holds it (an absent side is left out)."""
        entry: dict[str, Any] = {"key": self.key}
        if self.old is not ABSENT:
            entry["old"] = self.old
        if self.new is not ABSENT:
            entry["new"] = self.new
        entry["neutral"] = self.neutral is not None
        return entry


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def config_changes(old: Any, new: Any, key: str = "") -> list[ConfigChange]:
    """Every setting that differs between two resolved configs, as dotted keys in the configs' order.

    Mappings are compared key by key and lists of mappings of one length entry by entry
    (``method.0.buffer_per_task``, the form of a ``key=value`` override); any other value is
    compared whole, and so is a registered thing whose ``name`` changed (a method, a
    selector: its options are another method's).
    """
    if isinstance(old, dict) and isinstance(new, dict) and old.get("name", ABSENT) == new.get("name", ABSENT):
        changes = []
        for name in [*old, *(k for k in new if k not in old)]:
            child = f"{key}.{name}" if key else str(name)
            changes += config_changes(old.get(name, ABSENT), new.get(name, ABSENT), child)
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(isinstance(v, dict) for v in old + new):
        return [change for index, (a, b) in enumerate(zip(old, new)) for change in config_changes(a, b, f"{key}.{index}")]
    return [] if old == new else [ConfigChange(key, old, new)]


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    """Set (or, for :data:`ABSENT`, delete) the dotted ``key`` of ``config`` in place."""
    *parents, last = key.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is ABSENT:
        node.pop(last, None)
    else:
        node[last] = value


def read_changes(run_dir: Path | str) -> list[dict[str, Any]]:
    """The records of ``changes.jsonl``, oldest first ([] when there is none).

    Raises:
        UserError: If a line is not a JSON object.
    """
    path = Path(run_dir) / CHANGES_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise UserError(f"corrupt {path}: line {number} is not JSON ({error})") from None
        if not isinstance(record, dict):
            raise UserError(f"corrupt {path}: line {number} is not a JSON object")
        records.append(record)
    return records


def current_config(run_dir: Path | str, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config a run goes on with: the stored ``config.yaml`` with every recorded change applied."""
    if stored is None:
        return None
    config = json.loads(json.dumps(stored))  # a deep copy
    for record in read_changes(run_dir):
        for change in record.get("config", []):
            _set(config, change["key"], change.get("new", ABSENT))
    return config


def check_folder(run_dir: Path, force: bool) -> None:
    """Refuse to write a run into a folder that holds other things and no run (read only).

    Raises:
        UserError: If ``run_dir`` is a non-empty folder without ``config.yaml`` whose entries
            are not a run's own first files, and ``force`` is not set.
    """
    if force or not run_dir.is_dir() or (run_dir / CONFIG_FILE).exists():
        return
    foreign = sorted(entry.name for entry in run_dir.iterdir() if not _BEFORE_CONFIG.match(entry.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(
            f"{run_dir} is not empty and holds no mcit run (no {CONFIG_FILE}; it has {shown}); "
            "use a new or empty --out, or --force to write the run into it"
        )


@dataclass
class Differences:
    """How a run about to go on differs from what its directory stored (see :func:`differences`)."""

    fresh: bool  # no config stored: a new run
    config: list[ConfigChange] = field(default_factory=list)
    data: list[FileChange] = field(default_factory=list)
    data_now: dict[str, Any] | None = None  # the data files' fingerprint to store; None: keep the stored one

    @property
    def results_changing(self) -> list[ConfigChange]:
        """The config changes that can change results."""
        return [change for change in self.config if change.neutral is None]


def differences(store: RunStore, resolved: dict[str, Any], force: bool) -> Differences:
    """Compare the run directory with the config (and its data files) about to run in it; read only.

    Args:
        store: The run directory.
        resolved: The new resolved config (``config_to_dict``).
        force: Go on despite results-changing differences.

    Raises:
        UserError: Without ``force``, for a results-changing config difference (each key with
            its old and new value) or a changed data file (each one with what changed).
    """
    stored = current_config(store.run_dir, store.read_config())
    if stored is None:
        return Differences(fresh=True)
    found = Differences(fresh=False, config=config_changes(stored, resolved))
    if found.results_changing and not force:
        raise UserError(
            f"{store.run_dir} holds a run with a different config; these settings change results: "
            f"{', '.join(change.describe() for change in found.results_changing)}. Use another --out, or --force to go on "
            f"with them (recorded in {CHANGES_FILE})"
        )
    root, files = data_files(resolved["benchmark"])
    saved = _read_json(store.run_dir / DATA_FILE)
    if saved is None:  # a run from before data files were fingerprinted: from now on
        found.data_now = fingerprint(root, files) if files else None
        return found
    found.data, now = compare(saved, root, files)
    found.data_now = now if now != saved else None
    if found.data and not force:
        shown = ", ".join(change.describe() for change in found.data[:3])
        more = f" and {len(found.data) - 3} more" if len(found.data) > 3 else ""
        raise UserError(
            f"{store.run_dir}: data changed since the run started: {shown}{more}. Restore it, use another --out, "
            f"or --force to go on with it (recorded in {CHANGES_FILE})"
        )
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UserError(f"corrupt {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"corrupt {path}: not a JSON object")
    return loaded


def commit(store: RunStore, found: Differences, resolved: dict[str, Any], steps_done: int, mid_step: bool) -> str | None:
    """Write what :func:`differences` found, under the run's lock; returns a line for the user, or None.

    A new run writes its config and its data files' fingerprint. A resumed one appends a
    record to ``changes.jsonl`` (the changes, whether each is neutral, forced or not, and
    the step they apply from), writes neutral settings into ``config.yaml`` and stores the
    data files' fingerprint as they are now.

    Args:
        store: The run directory (nothing is written for a read-only one).
        found: From :func:`differences`, called under the same lock.
        resolved: The new resolved config.
        steps_done: Steps already committed: the changes apply from step ``steps_done + 1``.
        mid_step: Whether that step resumes from a mid-task checkpoint.
    """
    if not store.writer:
        return None
    if found.fresh:
        store.write_config(resolved)
        root, files = data_files(resolved["benchmark"])
        if files:
            store.write_json(DATA_FILE, fingerprint(root, files))
        return None
    if found.data_now is not None:
        store.write_json(DATA_FILE, found.data_now)
    if not found.config and not found.data:
        return None
    forced = bool(found.results_changing or found.data)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from_step": steps_done + 1,
        "mid_step": mid_step,
        "forced": forced,
        "config": [change.record() for change in found.config],
        "data": [{"file": change.file, "change": change.what} for change in found.data],
    }
    path = store.run_dir / CHANGES_FILE
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, existing + json.dumps(record, separators=(",", ":")) + "\n")
    neutral_changes = [change for change in found.config if change.neutral is not None]
    if neutral_changes:
        config = store.read_config()
        for change in neutral_changes:
            _set(config, change.key, change.new)
        store.write_config(config)
    what = [change.describe() for change in found.config] + [change.describe() for change in found.data]
    kind = "forced" if forced else "results-neutral"
    return f"resuming with {kind} changes from step {steps_done + 1}: {', '.join(what)} (recorded in {path.name})"
