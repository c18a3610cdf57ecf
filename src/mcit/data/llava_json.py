"""Data files as a sequence of samples, checked before any compute.

The file layouts (a JSON list, JSON Lines under any name, wrapped lists, dicts keyed by
question id, Hugging Face datasets) are recognised by :mod:`mcit.data.layouts`; the record
layouts (LLaVA conversations, question/answer records) are described in
:mod:`mcit.data.records`; for example::

    [{"id": "0001", "image": "coco/0001.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is shown?"},
                        {"from": "gpt", "value": "A cat."}]}]

Every record is checked when the dataset is built, so a bad file fails before any compute is
spent, with one line naming the file, the record and the field, and how many other records
share the problem. Samples hold :class:`mcit.data.images.ImageRef` (or
:class:`~mcit.data.images.StoredImage`) objects: pixels are decoded only when a batch is
collated, so a pool of a million records holds paths and text, not images.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from PIL import Image

from mcit.data.answer_files import AnswerTable, Join
from mcit.data.image_folders import ImageFolders
from mcit.data.images import IMAGE_ERRORS, ImageRef, StoredImage
from mcit.data.layouts import read_record_file
from mcit.data.records import Entry, Problem, parse_record, record_id
from mcit.data.sample import Sample
from mcit.errors import UserError, one_line


class LlavaDataset(Sequence[Sample]):
    """Samples of one data file, one per record (the whole conversation).

    Records are validated up front; a sample's images are :class:`ImageRef` (or
    :class:`StoredImage`) objects, decoded (converted to RGB, fully loaded, file closed) only
    when a batch is collated, so memory holds paths and text only. When a record has no
    reply but gives ``answers``, the first accepted answer becomes the answer.

    Args:
        path: The data file in any layout of :mod:`mcit.data.layouts` (JSON list, JSON
            Lines, wrapped list, dict keyed by question id, parquet, dataset folder).
        image_root: Folder that ``image`` paths are relative to, or several folders tried in
            order (the first that has the file is taken; see
            :class:`~mcit.data.image_folders.ImageFolders`); the file's folder when ``None``.
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
        answers: Accepted answers from a separate file, set as each record's ``answers``.
            A record the table has no answers for is left out and counted
            (:attr:`unanswered`); a file none of whose records has answers is refused.
        image_template: Image path of records that name none, from their fields
            (``"{imageId}.jpg"``).
        unique_ids: Refuse records that repeat an id (training files: buffers and pools
            refer to samples by id). With ``False`` (evaluation files) a record is its
            position: a repeated id becomes ``"<id>#<record index>"``, counted in
            :attr:`repeated_ids`.

    Raises:
        UserError: On any problem with the file or a record; the one-line message names the
            file, the record (0-based index, line for JSON Lines, id) and the field.
    """

    def __init__(
        self,
        path: Path,
        image_root: Path | Sequence[Path] | None = None,
        *,
        verify_images: bool = True,
        decode_images: bool = False,
        require_answer: bool = True,
        template: str | None = None,
        answer_key: str = "answer",
        answers: AnswerTable | None = None,
        image_template: str | None = None,
        unique_ids: bool = True,
    ) -> None:
        self.path = Path(path)
        roots = [self.path.parent] if image_root is None else [image_root] if isinstance(image_root, (str, Path)) else image_root
        self.image_folders = ImageFolders(roots)
        source = read_record_file(self.path)
        records, self._lines = source.records, source.lines
        self.layout, self.files = source.layout, source.files
        joined = self._join(answers, records) if answers is not None else None
        self.unanswered = 0 if joined is None else joined.missing
        entries: list[Entry] = []
        problems: list[tuple[int, str | None, Problem]] = []
        first_record_of: dict[str, int] = {}  # sample id -> record index, for duplicates
        for index, record in enumerate(records):
            if joined is not None:
                if joined.answers[index] is None:
                    continue
                if isinstance(record, dict):
                    record = {**record, "answers": joined.answers[index]}
            try:
                entry = parse_record(
                    record, index, self.image_folders.resolve, require_answer, template, answer_key, image_template
                )
                if unique_ids and entry.id in first_record_of:
                    raise Problem("with a duplicate id", "id", f"duplicate of record {first_record_of[entry.id]}")
                first_record_of.setdefault(entry.id, index)
            except Problem as problem:
                problems.append((index, record_id(record), problem))
                continue
            entries.append(entry)
        # Structure first: it is cheap, and a broken file should not wait for image checks.
        self._raise(problems)
        self._raise(self._image_problems(entries, "decode" if decode_images else "verify" if verify_images else "exists"))
        self.source_ids = [entry.id for entry in entries]
        # Each sample's id as its record wrote it (a number stays a number): `mcit select` writes ids back.
        self.json_ids = [records[entry.record].get("id", records[entry.record].get("question_id")) for entry in entries]
        self.repeated_ids = len(entries) - len(first_record_of)
        self._entries = _positional_ids(entries, self.path) if self.repeated_ids else entries

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
        images = tuple(
            ImageRef(image, where) if isinstance(image, str) else dataclasses.replace(image, where=where) for image in entry.images
        )
        return Sample(entry.id, entry.prompt, entry.answer, images, entry.references, entry.skill, entry.history)

    def __repr__(self) -> str:
        return f"LlavaDataset({str(self.path)!r}, {len(self)} samples)"

    @property
    def ids(self) -> list[str]:
        """The samples' ids, in file order (a repeated id carries its record index)."""
        return [entry.id for entry in self._entries]

    @property
    def image_files(self) -> set[str]:
        """Every distinct image file the records name (resolved paths; not images stored in a dataset)."""
        return {image for entry in self._entries for image in entry.images if isinstance(image, str)}

    @property
    def stored_images(self) -> int:
        """How many images the records hold as bytes inside the dataset (parquet, dataset folder)."""
        return sum(1 for entry in self._entries for image in entry.images if isinstance(image, StoredImage))

    @property
    def text_only(self) -> int:
        """How many records have no image."""
        return sum(1 for entry in self._entries if not entry.images)

    @property
    def notes(self) -> list[str]:
        """What the user should know about how the file was read (ambiguous image paths)."""
        return self.image_folders.notes(self.path)

    def _join(self, table: AnswerTable, records: list[Any]) -> Join:
        joined = table.join(records)
        if records and joined.missing == len(records):
            how = "by question_id, or by image and question text" if table.layout == "by_question_id" else "by position"
            raise UserError(f"{self.path}: none of its {len(records)} records has answers in {table.path} (joined {how})")
        return joined

    def _image_problems(self, entries: list[Entry], check: str) -> list[tuple[int, str | None, Problem]]:
        with_images = [e for e in entries if any(isinstance(image, str) for image in e.images)]
        folders = self.image_folders.folders
        if with_images and len(folders) == 1 and not os.path.isdir(folders[0]):
            count = len({e.record for e in with_images})
            raise UserError(
                f"{self.path}: image_root {folders[0]} is not a directory "
                f"({count} record{'s' * (count != 1)} with images)"
            )
        checked: dict[str | StoredImage, Problem | None] = {}  # records often share an image: check it once
        problems = []
        for entry in entries:
            for image in entry.images:
                if image not in checked:
                    checked[image] = _image_problem(image, check, self.image_folders)
                if checked[image] is not None:
                    problems.append((entry.record, entry.id, checked[image]))
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


def _positional_ids(entries: list[Entry], path: Path) -> list[Entry]:
    """Entries whose repeated ids carry their record index (``"12#40"``), so every sample id is unique."""
    counts = Counter(entry.id for entry in entries)
    renamed = [entry._replace(id=f"{entry.id}#{entry.record}") if counts[entry.id] > 1 else entry for entry in entries]
    if len({entry.id for entry in renamed}) != len(renamed):  # an id of the file already reads "<id>#<index>"
        clash = next(entry for entry, count in Counter(e.id for e in renamed).items() if count > 1)
        raise UserError(f"{path}: a repeated id renamed by its position clashes with an id of the file: {clash!r}")
    return renamed


def _image_problem(image: str | StoredImage, check: str, folders: ImageFolders) -> Problem | None:
    """The image's problem, if any; ``check`` is "exists", "verify" (PIL's verify) or "decode"."""
    if isinstance(image, StoredImage):
        name, opener = image.name, lambda: Image.open(io.BytesIO(image.read_bytes()))
    else:
        if os.path.isdir(image):
            return Problem("whose image is a directory", "image", f"{image} is a directory, not an image file")
        if not os.path.isfile(image):
            likeliest, *others = folders.tried(image)
            elsewhere = f" (nor {' nor '.join(others)})" if others else ""
            return Problem("with a missing image file", "image", f"no such file {likeliest}{elsewhere}")
        name, opener = image, lambda: Image.open(image)
    if check != "exists":
        try:
            with opener() as opened:
                opened.load() if check == "decode" else opened.verify()
        except IMAGE_ERRORS as error:
            return Problem("with an unreadable image", "image", f"cannot read {name}: {one_line(error, empty=type(error).__name__)}")
    return None
