"""Reading a config: a YAML file or a published stream's name, ``--method`` and ``key=value`` overrides.

Errors name the input that set the bad value (the file, ``--method`` or the override).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcit.config.schema import RunConfig, method_list
from mcit.errors import UserError, first_error

logger = logging.getLogger(__name__)


def _source_of(location: tuple, sources: list[tuple[list[str], str]], default: str) -> str:
    """Which input set the value at ``location``: the last override whose key path and the
    error's location share their leading keys, else the file (``default``)."""
    path = [str(part) for part in location]
    if not path and sources:  # a check across fields: any input may have set it
        return f"{default} with {', '.join(label for _, label in sources)}"
    for keys, label in reversed(sources):
        common = min(len(keys), len(path))
        if common and keys[:common] == path[:common]:
            return label
    return default


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise UserError(f"override {'.'.join(path)}: {'.'.join(path[:depth])} is not a mapping")
        node = node.setdefault(part, {})
    if isinstance(node, list) and path[-1].isdigit() and int(path[-1]) < len(node):
        node[int(path[-1])] = value
    elif isinstance(node, dict):
        node[path[-1]] = value
    else:
        raise UserError(f"override {'.'.join(path)}: parent is not a mapping")


def _expand_methods(data: dict[str, Any]) -> None:
    """Rewrite the ``method`` shorthands in place so ``method.0.option=...`` overrides apply."""
    if "method" in data:
        data["method"] = method_list(data["method"])


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a config file holds.

    Raises:
        UserError: Unreadable, not UTF-8, not YAML, empty, or not a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)})") from None
    if loaded is None:
        raise UserError(
            f"{path} is empty: give at least one setting, or run without a config file for the default run"
        )
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: the top level must be a mapping of settings")
    return loaded


def _resolve_root(data: dict[str, Any], folder: Path) -> None:
    """Make a file benchmark's ``root`` absolute: relative to ``folder``, which is the default."""
    benchmark = data.get("benchmark")
    if not isinstance(benchmark, dict) or not isinstance(benchmark.get("tasks"), list):
        return
    if not any(isinstance(task, dict) for task in benchmark["tasks"] + list(benchmark.get("eval_only") or [])):
        return
    root = benchmark.get("root")
    if root is None or isinstance(root, str):
        benchmark["root"] = str((folder / (root or ".")).resolve())


def _published(path: Path | None) -> Path | None:
    """The shipped YAML when ``path`` names a published stream (``coin``) and no such file exists.

    A folder of that name (``lamp_lifelong/`` holding the user's copy of its data) is not a
    config, so the published stream is used and a note says so.

    Raises:
        UserError: ``path`` is a folder and names no published stream.
    """
    if path is None or Path(path).is_file():
        return None
    from mcit.benchmarks.published import published_path

    shipped = published_path(str(path))
    if Path(path).is_dir():
        if shipped is None:
            raise UserError(f"{path} is a folder, not a config file (give a YAML file or a published stream's name)")
        logger.warning("note: %r is both a folder here and a published stream: using the published stream %s", str(path), shipped)
    return shipped


def _require_root(data: dict[str, Any], path: Path) -> None:
    """A published stream reads the user's data: its root must be given (relative to the working directory)."""
    benchmark = data.get("benchmark")
    if isinstance(benchmark, dict) and benchmark.get("root") is None:
        raise UserError(
            f"stream {Path(path).stem!r} reads your copy of its data: add benchmark.root=/path/to/its/folder "
            f"(`mcit ls benchmarks` lists the files it expects there)"
        )


def load_config(path: Path | None = None, overrides: list[str] | None = None, method: str | None = None) -> RunConfig:
    """Read a YAML config (or defaults), apply ``--method`` and overrides, validate.

    Args:
        path: The YAML file, the name of a published stream (``coin``; see
            :mod:`mcit.benchmarks.published`), or ``None`` for the default run.
        overrides: ``key=value`` strings, applied in order after the file.
        method: ``--method`` of the CLI (comma-separated names), applied before the overrides
            so ``method.0.option=...`` refers to it.

    Raises:
        UserError: On unreadable or empty YAML, unknown keys, bad values; the message names
            the input that set the bad value (the file, ``--method`` or the override) and
            the field.
    """
    published = _published(path)
    if published is not None:
        path = published
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    default_source = str(path) if path is not None else "config"
    sources: list[tuple[list[str], str]] = []
    steps = ([(f"method=[{method}]", f"--method {method!r}")] if method is not None else []) + [
        (text, f"override {text!r}") for text in overrides or []
    ]
    for text, label in steps:
        keys, value = parse_override(text)
        _expand_methods(data)
        apply_override(data, keys, value)
        sources.append((keys, label))
    if published is not None:
        _require_root(data, path)
    _resolve_root(data, Path(path).parent if path is not None and published is None else Path.cwd())
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        source = _source_of(tuple(first["loc"]), sources, default_source)
        raise UserError(f"{source}: invalid config: {first_error(error)}") from None
    except UserError as error:  # a name looked up outside a field (e.g. a benchmark's scenario)
        raise UserError(f"{default_source}: {error}") from None


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain data (for the run directory)."""
    return config.model_dump(mode="json")
