"""What differs between the runs' resolved configs: the settings a reader of ``mcit report`` must know.

The "methods" column of the comparison table names the methods and nothing else; two runs
of ``er`` may differ in their buffer, their LoRA rank or the parts they train. Each run's
``config.yaml`` is flattened to dotted keys in the form of a ``key=value`` override
(``model.lora.r``, ``method.0.buffer_per_task``: a list of mappings is indexed, any other
list is one value), and only the keys whose values are not the same in every run are shown.
A part that some runs set and others leave null or out (``model.lora``, ``benchmark.base``,
a chain's second method ``method.1``) is one row holding its whole value.

The cells of one method in a sweep form one column: a key whose values differ among them
(the seed, the task order) shows each value once. A sweep cell that starts from its seed's
shared base model (``sweep.json``'s ``base_from``) is compared with the ``model.name`` and
``benchmark.base`` of the cell that trained that model, so the shared base stage does not
read as a difference between methods.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mcit.config.neutral import Neutral, neutral

SHOWN_VALUES = 4  # distinct values a column shows by name; more are counted


class _Absent:
    """A key a run's config does not have (another method's option, a missing list entry)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def flatten(node: Any, key: str = "") -> dict[str, Any]:
    """A config as ``{dotted key: value}``: mappings by key, lists of mappings by index, anything else whole."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for name, value in node.items():
            flat.update(flatten(value, f"{key}.{name}" if key else str(name)))
        return flat
    if isinstance(node, list) and node and all(isinstance(value, dict) for value in node):
        flat = {}
        for index, value in enumerate(node):
            flat.update(flatten(value, f"{key}.{index}"))
        return flat
    return {key: node}


def value_at(config: Any, key: str) -> Any:
    """The value of dotted ``key`` in a nested config (list entries by index); :data:`ABSENT` where there is none."""
    node = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return ABSENT
    return node


def show(value: Any, depth: int = 0) -> str:
    """A config value as YAML's flow style writes it: ``null``, ``true``, ``[color, count]``, ``{r: 16}``.

    Mappings inside a mapping are counted, not spelled out (``train: {15 settings}``).
    """
    if value is ABSENT:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show(v, depth) for v in value) + "]"
    if isinstance(value, dict):
        if depth > 0:
            return f"{{{len(flatten(value))} settings}}"
        return "{" + ", ".join(f"{k}: {show(v, depth + 1)}" for k, v in value.items()) + "}"
    return str(value)


def _same(value: Any) -> str:
    """A canonical form for equality (``1`` and ``1.0`` apart, as YAML keeps them)."""
    return "(absent)" if value is ABSENT else json.dumps(value, sort_keys=True, default=str) + type(value).__name__


@dataclass
class Subject:
    """One column: a run, or the cells of one method of a sweep."""

    title: str
    configs: list[dict[str, Any]]  # one resolved config per run


@dataclass(frozen=True)
class DiffRow:
    key: str
    neutral: Neutral | None  # why the key cannot change results; None when it can
    cells: list[str]  # one per subject, as shown ("-": absent)

    @property
    def unusual(self) -> set[int]:
        """The columns whose value is not the row's most common one (none where no value is
        the most common of two or more columns alone): the run that used LoRA among runs without."""
        ranked = Counter(self.cells).most_common(2)
        if ranked[0][1] < 2 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
            return set()
        return {index for index, cell in enumerate(self.cells) if cell != ranked[0][0]}


@dataclass
class ConfigDiff:
    subjects: list[str]
    rows: list[DiffRow] = field(default_factory=list)
    shared: int = 0  # keys every run has with one value


def _cell(values: list[Any]) -> str:
    """One subject's values of a key: the value, or each distinct one once (a sweep method's cells)."""
    distinct: dict[str, Any] = {}
    for value in values:
        distinct.setdefault(_same(value), value)
    shown = [show(value) for value in distinct.values()]
    if len(shown) <= SHOWN_VALUES:
        return ", ".join(shown)
    return f"{len(shown)} values: " + ", ".join(shown[: SHOWN_VALUES - 1]) + ", ..."


def _merged_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Every config's dotted keys, each key placed after the key it follows in the first config that has it."""
    keys: list[str] = []
    for config in configs:
        previous = None
        for key in flatten(config):
            if key not in keys:
                keys.insert(keys.index(previous) + 1 if previous is not None else 0, key)
            previous = key
    return keys


def _is_switched(values: list[Any]) -> bool:
    """Whether a part is set (a mapping) in some runs and null or left out in the others."""
    mappings = sum(isinstance(value, dict) for value in values)
    return 0 < mappings < len(values) and all(isinstance(v, dict) or v is None or v is ABSENT for v in values)


def _switched_parts(configs: list[Any], keys: list[str]) -> list[str]:
    """The outermost parts some runs set and others leave null or out (``model.lora``, ``benchmark.base``, ``method.1``)."""
    parts: list[str] = []
    for key in keys:
        names = key.split(".")
        for length in range(1, len(names)):
            parent = ".".join(names[:length])
            if any(parent == part or parent.startswith(f"{part}.") for part in parts):
                break
            if _is_switched([value_at(config, parent) for config in configs]):
                parts.append(parent)
                break
    return parts


def config_diff(subjects: list[Subject]) -> ConfigDiff:
    """The keys whose values are not one value across every run of every subject, in the configs' order.

    A part that some runs set and others leave null or out (LoRA, the base stage, a second
    method) is one row with its whole value; a key below it is a row of its own only where
    the runs that set the part disagree on it. Keys that change results come first, then
    results-neutral ones (:mod:`mcit.config.neutral`).
    """
    configs = [config for subject in subjects for config in subject.configs]
    keys = _merged_keys(configs)
    parts = _switched_parts(configs, keys)
    diff = ConfigDiff([subject.title for subject in subjects])
    changing: list[DiffRow] = []
    neutral_rows: list[DiffRow] = []

    def add(key: str, value_of: Any) -> None:
        row = DiffRow(key, neutral(key), [_cell([value_of(config) for config in subject.configs]) for subject in subjects])
        (changing if row.neutral is None else neutral_rows).append(row)

    shown_parts: set[str] = set()
    for key in keys:
        part = next((p for p in parts if key == p or key.startswith(f"{p}.")), None)
        if part is None:
            if len({_same(value_at(config, key)) for config in configs}) == 1:
                diff.shared += 1
            else:
                add(key, lambda config, key=key: value_at(config, key))
            continue
        if part not in shown_parts:  # the part's row, where its first key is
            shown_parts.add(part)
            add(part, lambda config, part=part: value_at(config, part))
        setting = [config for config in configs if isinstance(value_at(config, part), dict)]
        if key != part and len({_same(value_at(config, key)) for config in setting}) > 1:
            # The runs that set the part disagree on this key; the others show the part's null (or "-").
            add(key, lambda config, key=key, part=part: value_at(config, key if isinstance(value_at(config, part), dict) else part))
    diff.rows = changing + neutral_rows
    return diff
