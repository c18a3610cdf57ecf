"""Data files (a JSON list or JSON Lines) as a sequence of samples, checked before any compute.

The record layouts (LLaVA conversations, question/answer records) are described in
:mod:`mcit.data.records`; for example::

    [{"id": "0001", "image": "coco/0001.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?"},
                        {"from": "gpt", "value": "A cat."}]}]

Files named ``*.jsonl`` hold one record per line.

Every record is checked when the dataset is built, so a bad file fails before any compute is
spent, with one line naming the file, the record and the field, and how many other records
share the problem. Samples hold :class:`mcit.data.images.ImageRef` objects: pixels are decoded only when a
batch is collated, so a pool of a million records holds paths and text, not images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from PIL import Image

from mcit.data.answer_files import AnswerTable
from mcit.data.images import IMAGE_ERRORS, ImageRef
from mcit.data.records import Entry, Problem, kind, parse_record, record_id
from mcit.data.sample import Sample
from mcit.errors import UserError, one_line


class LlavaDataset(Sequence[Sample]):
    """Samples of one data file, one per record (the whole conversation).

    Records are validated up front; a sample's images are :class:`ImageRef` objects, decoded
    (converted to RGB, fully loaded, file closed) only when a batch is collated, so memory
    holds paths and text only. When a record has
    no reply but gives ``answers``, the first accepted answer becomes the answer.

    Args:
        path: The ``.json`` file (a list of records) or ``.jsonl`` file (one per line).
        image_root: Directory that ``image`` paths are relative to; the file's directory when
            ``None``.
        verify_images: Check every image with PIL's ``verify`` at load (one pass over the
            files). With ``False`` only existence is checked and a corrupt file fails when
            decoded.
        decode_images: Decode every image fully at load instead (slower; catches a file
            whose header is sound but whose pixels are truncated). ``mcit data check`` does.
        require_answer: Reject records without a non-empty answer (set ``False`` for
            prompt-only evaluation files).
        template: Prompt template with ``{question}`` for question/answer records (see
            :func:`mcit.data.records.parse_record`).
        answer_key: The field of a question/answer record that holds its answer.
        answers: Accepted answers from a separate file, set as each record's ``answers``
            (a record the table has no answers for is a problem of the file).

    Raises:
        UserError: On any problem with the file or a record; the one-line message names the
            file, the record (0-based index, line for JSON Lines, id) and the field.
    """

    def __init__(
        self,
        path: Path,
        image_root: Path | None = None,
        *,
        verify_images: bool = True,
        decode_images: bool = False,
        require_answer: bool = True,
        template: str | None = None,
        answer_key: str = "answer",
        answers: AnswerTable | None = None,
    ) -> None:
        self.path = Path(path)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        records, self._lines = _read_records(self.path)
        entries: list[Entry] = []
        problems: list[tuple[int, str | None, Problem]] = []
        first_record_of: dict[str, int] = {}  # sample id -> record index, for duplicates
        for index, record in enumerate(records):
            try:
                if answers is not None:
                    record = _with_answers(record, index, answers)
                entry = parse_record(record, index, str(self.image_root), require_answer, template, answer_key)
                if entry.id in first_record_of:
                    raise Problem("with a duplicate id", "id", f"duplicate of record {first_record_of[entry.id]}")
                first_record_of[entry.id] = index
            except Problem as problem:
                problems.append((index, record_id(record), problem))
                continue
            entries.append(entry)
        # Structure first: it is cheap, and a broken file should not wait for image checks.
        self._raise(problems)
        self._raise(self._image_problems(entries, "decode" if decode_images else "verify" if verify_images else "exists"))
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        entry = self._entries[index]
        where = f"{self.path}: {self._where(entry.record, entry.id)}"
        images = tuple(ImageRef(path, where) for path in entry.images)
        return Sample(entry.id, entry.prompt, entry.answer, images, entry.references, entry.skill, entry.history)

    def __repr__(self) -> str:
        return f"LlavaDataset({str(self.path)!r}, {len(self)} samples)"

    @property
    def ids(self) -> list[str]:
        """The samples' ids, in file order."""
        return [entry.id for entry in self._entries]

    @property
    def image_files(self) -> set[str]:
        """Every distinct image file the records name (resolved paths)."""
        return {path for entry in self._entries for path in entry.images}

    @property
    def text_only(self) -> int:
        """How many records have no image."""
        return sum(1 for entry in self._entries if not entry.images)

    def _image_problems(self, entries: list[Entry], check: str) -> list[tuple[int, str | None, Problem]]:
        with_images = [e for e in entries if e.images]
        if with_images and not self.image_root.is_dir():
            count = len({e.record for e in with_images})
            raise UserError(
                f"{self.path}: image_root {self.image_root} is not a directory "
                f"({count} record{'s' * (count != 1)} with images)"
            )
        checked: dict[str, Problem | None] = {}  # records often share an image: check it once
        problems = []
        for entry in with_images:
            for path in entry.images:
                if path not in checked:
                    checked[path] = _image_problem(path, check)
                if checked[path] is not None:
                    problems.append((entry.record, entry.id, checked[path]))
                    break
        return problems

    def _where(self, index: int, record_id: str | None) -> str:
        line = f"line {self._lines[index]}, " if self._lines is not None else ""
        return f"record {index} ({line}{'no id' if record_id is None else f'id {record_id!r}'})"

    def _raise(self, problems: list[tuple[int, str | None, Problem]]) -> None:
        """Raise the first problem, counting the records that share it (and the rest)."""
        if not problems:
            return
        index, record_id, first = problems[0]
        same = sum(1 for _, _, p in problems[1:] if p.kind == first.kind)
        other = len(problems) - 1 - same
        notes = [f"and {same} more record{'s' * (same != 1)} {first.kind}"] if same else []
        if other:
            notes.append(f"{other} record{'s' * (other != 1)} with other problems")
        summary = f" ({'; '.join(notes)})" if notes else ""
        raise UserError(f"{self.path}: {self._where(index, record_id)}: field {first.field!r}: {first.detail}{summary}")


def load_llava_json(path: Path | str, image_root: Path | str | None = None, **options: Any) -> LlavaDataset:
    """Load a data file; ``options`` are :class:`LlavaDataset`'s keywords."""
    return LlavaDataset(Path(path), None if image_root is None else Path(image_root), **options)


def _read_records(path: Path) -> tuple[list[Any], list[int] | None]:
    """The file's records, and for JSON Lines each record's line number."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such data file") from None
    except OSError as error:
        raise UserError(f"cannot read data file {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}, line {line}); save it as UTF-8") from None
    if path.suffix.lower() == ".jsonl":
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
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        hint = "; for one record per line, name the file .jsonl" if error.msg == "Extra data" else ""
        raise UserError(
            f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}{hint}"
        ) from None
    if not isinstance(loaded, list):
        raise UserError(f"{path}: the top level must be a list of records, got {kind(loaded)}")
    return loaded, None


def _with_answers(record: Any, index: int, table: AnswerTable) -> Any:
    found = table.answers(index, record)
    if found is None:
        key = "question_id" if table.layout == "by_question_id" else "(position)"
        raise Problem(f"without answers in {table.path.name}", key, f"{table.path} has no answers for this record")
    return {**record, "answers": found} if isinstance(record, dict) else record


def _image_problem(path: str, check: str) -> Problem | None:
    """The image's problem, if any; ``check`` is "exists", "verify" (PIL's verify) or "decode"."""
    if os.path.isdir(path):
        return Problem("whose image is a directory", "image", f"{path} is a directory, not an image file")
    if not os.path.isfile(path):
        return Problem("with a missing image file", "image", f"no such file {path}")
    if check != "exists":
        try:
            with Image.open(path) as image:
                image.load() if check == "decode" else image.verify()
        except IMAGE_ERRORS as error:
            return Problem("with an unreadable image", "image", f"cannot read {path}: {one_line(error, empty=type(error).__name__)}")
    return None
