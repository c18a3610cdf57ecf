"""A data file's records, whatever layout it ships in, recognised by its content.

The layouts the field's released files use:

- a JSON list of records, or JSON Lines (one record per line) under any name: POPE ships
  ``coco_pope_random.json`` as JSON Lines;
- a list under a wrapper key: VQAv2's ``{"questions": [...]}`` and ``{"annotations": [...]}``,
  TextVQA's ``{"data": [...]}``;
- a dict keyed by question id, each value a record (GQA's question files) or an answer;
- a Hugging Face dataset: a parquet file or a ``save_to_disk`` folder, images stored as bytes
  (the lmms-lab evaluation sets); see :mod:`mcit.data.hf_datasets`.

Records are returned as parsed; :mod:`mcit.data.records` checks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.data.records import kind
from mcit.errors import UserError

WRAPPER_KEYS = ("data", "questions", "annotations")
"""Keys a list of records ships under (TextVQA, VQAv2 questions, VQAv2 annotations), tried in this order."""
_PARQUET_MAGIC = b"PAR1"


@dataclass
class RecordFile:
    """The records of one data file and how they were found.

    Attributes:
        path: The file or dataset folder.
        records: The records, in file order.
        lines: For JSON Lines, each record's line number (for messages); else ``None``.
        layout: What the file was read as ("JSON list", "JSON Lines", "'questions' list",
            "dict keyed by question id", "parquet", "dataset folder").
        files: Every file the records were read from (a dataset folder has several), for
            the manifest.
    """

    path: Path
    records: list[Any]
    lines: list[int] | None
    layout: str
    files: list[Path] = field(default_factory=list)


def is_dataset_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


def read_record_file(path: Path, what: str = "data file", keyed_answers: bool = False) -> RecordFile:
    """The records of ``path``, its layout recognised from its content.

    Args:
        path: A JSON or JSON Lines file (any name), a parquet file, or a dataset folder.
        what: What the file is, for messages ("data file", "answers file").
        keyed_answers: Also read a dict of answers keyed by question id
            (``{"34602": ["yes", ...]}``) as records ``{"question_id", "answer"}``: the
            layout of some answer files, never of a data file.

    Raises:
        UserError: One line naming the file (and the line or record) when it cannot be read
            or is in no known layout.
    """
    if path.is_dir():
        if not is_dataset_folder(path):
            raise UserError(f"{path} is a folder, not a {what} or a Hugging Face dataset saved with save_to_disk")
        return _dataset(path, "dataset folder")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_PARQUET_MAGIC))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as error:
        raise UserError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if head == _PARQUET_MAGIC or path.suffix.lower() == ".parquet":
        return _dataset(path, "parquet")
    text = _text(path, what)
    if path.suffix.lower() == ".jsonl":
        records, lines = _json_lines(path, text)
        return RecordFile(path, records, lines, "JSON Lines", [path])
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and _starts_with_an_object_line(text):
            records, lines = _json_lines(path, text)
            return RecordFile(path, records, lines, "JSON Lines", [path])
        raise UserError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    records, layout = _top_level(path, loaded, keyed_answers)
    return RecordFile(path, records, None, layout, [path])


def _dataset(path: Path, layout: str) -> RecordFile:
    from mcit.data.hf_datasets import read_dataset  # datasets is imported only for these files

    records, files = read_dataset(path)
    return RecordFile(path, records, None, layout, files)


def _text(path: Path, what: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}, line {line}); save the {what} as UTF-8") from None


def _starts_with_an_object_line(text: str) -> bool:
    """Whether the first non-empty line is a JSON object on its own (JSON Lines, not a broken JSON document)."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _json_lines(path: Path, text: str) -> tuple[list[Any], list[int]]:
    records, lines = [], []
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and similar.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path}: line {number} (record {len(records)}) is not valid JSON: {error.msg} at column {error.colno}"
            ) from None
        lines.append(number)
    return records, lines


def _top_level(path: Path, loaded: Any, keyed_answers: bool) -> tuple[list[Any], str]:
    """The records of a parsed JSON document and the layout's name."""
    if isinstance(loaded, list):
        return loaded, "JSON list"
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), list):
                return loaded[key], f"{key!r} list"
        values = list(loaded.values())
        if values and all(isinstance(value, dict) for value in values):
            # GQA: {"201307251": {"imageId": ..., "question": ..., "answer": ...}}; the key is the id.
            return [{"question_id": key, **value} for key, value in loaded.items()], "dict keyed by question id"
        answers = (str, list, int, float)
        if keyed_answers and values and all(isinstance(v, answers) and not isinstance(v, bool) for v in values):
            return [{"question_id": key, "answer": value} for key, value in loaded.items()], "dict of answers keyed by question id"
    raise UserError(
        f"{path}: the top level must be a list of records (or JSON Lines, a list under "
        f"{', '.join(repr(k) for k in WRAPPER_KEYS)}, or a dict keyed by question id), got {kind(loaded)}"
    )
