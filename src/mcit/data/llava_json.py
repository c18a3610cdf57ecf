"""LLaVA conversation files (a JSON list or JSON Lines) as a sequence of single-turn samples.

The format is LLaVA's instruction-tuning format::

    [{"id": "0001", "image": "coco/0001.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?"},
                        {"from": "gpt", "value": "A cat."}]}]

A record without ``image`` is text-only. Evaluation files may add ``"answers": [...]`` (every
accepted answer, kept as :attr:`Sample.references`) and a hidden ``"skill"`` (or ``"task"``)
label. Files named ``*.jsonl`` hold one record per line.

Every record is checked when the dataset is built, so a bad file fails before any compute is
spent, with one line naming the file, the record and the field, and how many other records
share the problem. Pixels are decoded only on indexing, so a pool of a million records holds
paths and text, not images.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

from PIL import Image

from mcit.data.sample import Sample
from mcit.errors import UserError

# Sample.prompt excludes the placeholder: the collator re-inserts the image through the
# processor's chat template, and a literal "<image>" left in the text would add a second one.
_PLACEHOLDER = re.compile(r"\n?<image>\n?")
_HUMAN = {"human", "user"}
_GPT = {"gpt", "assistant"}
# What PIL raises on unidentifiable, truncated or pathologically large files.
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class _Entry(NamedTuple):
    """One sample without its pixels (a 1M-record pool keeps only these in memory)."""

    id: str
    prompt: str
    answer: str
    image: str | None  # resolved path
    references: tuple[str, ...]
    skill: str
    record: int  # index of the source record, for error messages


class _Problem(Exception):
    """A record's first problem; ``kind`` ("without an answer") groups records in the summary."""

    def __init__(self, kind: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.field, self.detail = kind, field, detail


class LlavaDataset(Sequence[Sample]):
    """Samples of one LLaVA conversation file.

    Records are validated up front; images are decoded lazily in ``__getitem__`` (converted to
    RGB, fully loaded, file closed), so memory holds paths and text only.

    Each sample is single-turn. ``turns="first"`` keeps each record's first human/gpt pair;
    ``turns="all"`` makes one sample per pair, with id ``"{id}#{k}"`` for the k-th pair
    (k >= 1). Later turns then lose the earlier ones as context: the model sees the image and
    that one question only. ``answers`` belong to the first pair; when a record has no gpt
    turn, the first accepted answer becomes the answer.

    Args:
        path: The ``.json`` file (a list of records) or ``.jsonl`` file (one per line).
        image_root: Directory that ``image`` paths are relative to; the file's directory when
            ``None``.
        turns: ``"first"`` or ``"all"`` (see above).
        verify_images: Check every image with PIL's ``verify`` at load (one pass over the
            files). With ``False`` only existence is checked and a corrupt file fails when
            indexed.
        require_answer: Reject records without a non-empty answer (set ``False`` for
            prompt-only evaluation files).

    Raises:
        UserError: On any problem with the file or a record; the one-line message names the
            file, the record (0-based index, line for JSON Lines, id) and the field.
    """

    def __init__(
        self,
        path: Path,
        image_root: Path | None = None,
        *,
        turns: Literal["first", "all"] = "first",
        verify_images: bool = True,
        require_answer: bool = True,
    ) -> None:
        if turns not in ("first", "all"):
            raise UserError(f"turns must be 'first' or 'all', got {turns!r}")
        self.path = Path(path)
        self.image_root = Path(image_root) if image_root is not None else self.path.parent
        records, self._lines = _read_records(self.path)
        entries: list[_Entry] = []
        problems: list[tuple[int, str | None, _Problem]] = []
        first_record_of: dict[str, int] = {}  # sample id -> record index, for duplicates
        for index, record in enumerate(records):
            record_id = _record_id(record)
            try:
                new = _parse_record(record, record_id, index, str(self.image_root), turns, require_answer)
                for entry in new:
                    if entry.id in first_record_of:
                        raise _Problem("with a duplicate id", "id", f"duplicate of record {first_record_of[entry.id]}")
                    first_record_of[entry.id] = index
            except _Problem as problem:
                problems.append((index, record_id, problem))
                continue
            entries.extend(new)
        # Structure first: it is cheap, and a broken file should not wait for image checks.
        self._raise(problems)
        self._raise(self._image_problems(entries, verify_images))
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
        image = None if entry.image is None else self._decode(entry)
        return Sample(entry.id, entry.prompt, entry.answer, image, entry.references, entry.skill)

    def __repr__(self) -> str:
        return f"LlavaDataset({str(self.path)!r}, {len(self)} samples)"

    def _decode(self, entry: _Entry) -> Image.Image:
        try:
            with Image.open(entry.image) as image:
                image.load()
                return image.convert("RGB")
        except _IMAGE_ERRORS as error:
            where = self._where(entry.record, entry.id)
            raise UserError(
                f"{self.path}: {where}: field 'image': cannot decode {entry.image}: {_one_line(error)}"
            ) from None

    def _image_problems(self, entries: list[_Entry], verify: bool) -> list[tuple[int, str | None, _Problem]]:
        with_images = [e for e in entries if e.image is not None]
        if with_images and not self.image_root.is_dir():
            count = len({e.record for e in with_images})
            raise UserError(
                f"{self.path}: image_root {self.image_root} is not a directory "
                f"({count} record{'s' * (count != 1)} with images)"
            )
        checked: dict[str, _Problem | None] = {}  # records often share an image: check it once
        problems, reported = [], set()
        for entry in with_images:
            if entry.record in reported:
                continue
            if entry.image not in checked:
                checked[entry.image] = _image_problem(entry.image, verify)
            if checked[entry.image] is not None:
                problems.append((entry.record, entry.id, checked[entry.image]))
                reported.add(entry.record)
        return problems

    def _where(self, index: int, record_id: str | None) -> str:
        line = f"line {self._lines[index]}, " if self._lines is not None else ""
        return f"record {index} ({line}{'no id' if record_id is None else f'id {record_id!r}'})"

    def _raise(self, problems: list[tuple[int, str | None, _Problem]]) -> None:
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
    """Load a LLaVA conversation file; ``options`` are :class:`LlavaDataset`'s keywords."""
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
        raise UserError(f"{path}: the top level must be a list of records, got {_kind(loaded)}")
    return loaded, None


def _record_id(record: Any) -> str | None:
    value = record.get("id") if isinstance(record, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # some files number their records
    return value if isinstance(value, str) and value else None


def _parse_record(
    record: Any, record_id: str | None, index: int, root: str, turns: str, require_answer: bool
) -> list[_Entry]:
    if not isinstance(record, dict):
        raise _Problem("that are not objects", "(record)", f"must be an object, got {_kind(record)}")
    if record_id is None:
        detail = "missing" if "id" not in record else f"must be a non-empty string or integer, got {record['id']!r}"
        raise _Problem("without a valid id", "id", detail)
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        detail = "missing" if conversations is None else f"must be a non-empty list of turns, got {conversations!r:.40}"
        raise _Problem("with missing or empty conversations", "conversations", detail)
    pairs = _pairs(conversations)
    references = _references(record.get("answers"))
    skill = _skill(record)
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        detail = "empty path" if image == "" else f"must be a path string, got {_kind(image)}"
        raise _Problem("with a bad image field", "image", detail)
    image_path = os.path.join(root, image) if image else None
    entries = []
    for k, (human, prompt, gpt, answer) in enumerate(pairs[:1] if turns == "first" else pairs):
        if answer is None and k == 0 and references:
            answer = references[0]  # evaluation files may give accepted answers instead of a gpt turn
        if require_answer and not answer:
            field = "conversations" if gpt is None else f"conversations[{gpt}].value"
            detail = f"no gpt turn answers conversations[{human}]" if gpt is None else "empty answer"
            raise _Problem("without an answer", field, detail)
        sample_id = record_id if k == 0 else f"{record_id}#{k}"
        entries.append(_Entry(sample_id, prompt, answer or "", image_path, references if k == 0 else (), skill, index))
    return entries


def _pairs(conversations: list[Any]) -> list[tuple[int, str, int | None, str | None]]:
    """(human turn index, prompt, gpt turn index, answer) for each exchange; gpt may be absent."""
    pairs: list[tuple[int, str, int | None, str | None]] = []
    for k, turn in enumerate(conversations):
        field = f"conversations[{k}]"
        if not isinstance(turn, dict):
            raise _Problem("with a malformed turn", field, f"must be an object with 'from' and 'value', got {_kind(turn)}")
        for key in ("from", "value"):
            if not isinstance(turn.get(key), str):
                detail = "missing" if key not in turn else f"must be a string, got {_kind(turn[key])}"
                raise _Problem("with a malformed turn", f"{field}.{key}", detail)
        role, value = turn["from"].lower(), turn["value"]
        human_expected = k % 2 == 0
        if role in _HUMAN and human_expected:
            pairs.append((k, _PLACEHOLDER.sub("", value).strip(), None, None))
        elif role in _GPT and not human_expected:
            pairs[-1] = (*pairs[-1][:2], k, value.strip())
        else:
            detail = (
                f"unknown speaker {turn['from']!r} (expected human or gpt)"
                if role not in _HUMAN | _GPT
                else f"got {turn['from']!r} where a {'human' if human_expected else 'gpt'} turn belongs "
                "(turns alternate, starting with human)"
            )
            raise _Problem("with a malformed turn", f"{field}.from", detail)
    return pairs


def _references(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise _Problem("with a bad answers field", "answers", f"must be a non-empty list of strings, got {value!r:.40}")
    return tuple(a.strip() for a in value)


def _skill(record: dict) -> str:
    for key in ("skill", "task"):
        if key in record:
            if not isinstance(record[key], str):
                raise _Problem("with a bad skill label", key, f"must be a string, got {_kind(record[key])}")
            return record[key]
    return ""


def _image_problem(path: str, verify: bool) -> _Problem | None:
    if os.path.isdir(path):
        return _Problem("whose image is a directory", "image", f"{path} is a directory, not an image file")
    if not os.path.isfile(path):
        return _Problem("with a missing image file", "image", f"no such file {path}")
    if verify:
        try:
            with Image.open(path) as image:
                image.verify()
        except _IMAGE_ERRORS as error:
            return _Problem("with an unreadable image", "image", f"cannot read {path}: {_one_line(error)}")
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__
