"""Accepted answers kept in a file of their own, joined to the evaluation file's records.

Two layouts, named by ``answers_format`` in a file task:

- ``by_question_id``: records with a question id and their answers, in any layout
  :mod:`mcit.data.layouts` reads (a list, JSON Lines under any name, a list under ``data`` or
  ``annotations``, a dict keyed by question id). The answers are ``answers`` (strings or
  ``{"answer": ...}`` objects), else the task's ``answer_key`` field (POPE's ``label``),
  else ``answer``. TextVQA's ``TextVQA_0.5.1_val.json``, VQAv2's annotations and POPE's
  ``coco_pope_random.json`` are of this kind. A record joins the answers of the same
  ``question_id`` when that id is unique on both sides and the two records do not disagree
  on image or question; otherwise it joins by image and question text: LLaVA's TextVQA
  questions carry the image id as ``question_id``, and LLaVA's POPE questions are numbered
  apart from POPE's labels. The question text is compared on its first line, so the
  instruction LLaVA appends ("Answer the question using a single word or phrase.", OCR
  tokens) does not stop the join; the image by file name without extension, or by its
  number (``COCO_val2014_000000262148.jpg`` is image ``262148``).
- ``coco_captions_by_position``: a COCO caption file (``{"annotations": [{"image_id", "caption"}]}``)
  whose ``image_id`` is the 1-based position of the record in the evaluation file, as UCIT's
  ``val_coco_type_3000.json`` for its caption tasks.

The answers become each record's ``answers`` before the record is read.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from mcit.data.layouts import read_record_file
from mcit.data.records import record_id
from mcit.errors import UserError

AnswersFormat = Literal["by_question_id", "coco_captions_by_position"]
_AMBIGUOUS = -1  # an (image, question) pair that several answer records share


@dataclass(frozen=True)
class Join:
    """The answers of each evaluation record (``None``: none found), and how they were found."""

    answers: list[list[str] | None]
    by_id: int
    by_question: int

    @property
    def missing(self) -> int:
        return sum(1 for found in self.answers if found is None)


class AnswerTable:
    """Accepted answers of an evaluation file's records, from a separate file.

    Args:
        path: The answers file.
        layout: ``by_question_id`` or ``coco_captions_by_position`` (see the module).
        answer_key: The field holding a record's answer when it has no ``answers``.

    Raises:
        UserError: The file cannot be read, or a record of it has no answers (one line
            naming the record).
    """

    def __init__(self, path: Path | str, layout: AnswersFormat, answer_key: str = "answer") -> None:
        self.path, self.layout = Path(path), layout
        items = read_record_file(self.path, "answers file", keyed_answers=True).records
        self._by_position: dict[int, list[str]] = defaultdict(list)
        self._answers: list[list[str]] = []
        self._ids: dict[str, int] = {}
        self._id_counts: Counter[str] = Counter()
        self._keys: list[tuple[set[str], str | None]] = []  # per answer record: image keys, question key
        self._pairs: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise UserError(f"{self.path}: record {index} must be an object, got {type(item).__name__}")
            if layout == "coco_captions_by_position":
                if not isinstance(item.get("image_id"), int) or not isinstance(item.get("caption"), str):
                    raise UserError(f"{self.path}: record {index}: every annotation needs an integer image_id and a caption string")
                self._by_position[item["image_id"] - 1].append(item["caption"])
            else:
                self._add(index, item, answer_key)

    def join(self, records: list[Any]) -> Join:
        """The answers of each of ``records`` (the evaluation file's, in order)."""
        if self.layout == "coco_captions_by_position":
            return Join([self._by_position.get(index) or None for index in range(len(records))], 0, 0)
        eval_ids = Counter(record_id(record) for record in records)
        found: list[list[str] | None] = []
        by_id = by_question = 0
        for record in records:
            if not isinstance(record, dict):
                found.append(None)
                continue
            identifier = record_id(record)
            images, question = _image_keys(record), _question_key(record)
            match = self._ids.get(identifier) if identifier is not None and eval_ids[identifier] == 1 else None
            if match is not None and self._id_counts[identifier] == 1 and self._agree(match, images, question):
                by_id += 1
            else:
                match = self._by_pair(images, question)
                by_question += match is not None
            found.append(None if match is None else self._answers[match])
        return Join(found, by_id, by_question)

    def _add(self, index: int, item: dict, answer_key: str) -> None:
        answers = _answers_of(item, answer_key)
        if not answers:
            where = f"record {index}" + (f" (id {record_id(item)!r})" if record_id(item) else "")
            raise UserError(f"{self.path}: {where}: no answers (give answers, {answer_key} or answer)")
        position = len(self._answers)
        self._answers.append(answers)
        identifier = record_id(item)
        if identifier is not None:
            self._ids.setdefault(identifier, position)
            self._id_counts[identifier] += 1
        images, question = _image_keys(item), _question_key(item)
        self._keys.append((images, question))
        if question is not None:
            for image in images:
                previous = self._pairs.setdefault((image, question), position)
                if previous != position:
                    self._pairs[(image, question)] = _AMBIGUOUS

    def _agree(self, position: int, images: set[str], question: str | None) -> bool:
        """Whether the answer record at ``position`` can be the question (nothing both carry differs)."""
        their_images, their_question = self._keys[position]
        if question is not None and their_question is not None and question != their_question:
            return False
        return not (images and their_images and not images & their_images)

    def _by_pair(self, images: set[str], question: str | None) -> int | None:
        if question is None:
            return None
        matches = {self._pairs.get((image, question)) for image in images} - {None}
        return matches.pop() if len(matches) == 1 and _AMBIGUOUS not in matches else None


def _answers_of(item: dict, answer_key: str) -> list[str]:
    for key in dict.fromkeys(("answers", answer_key, "answer")):
        if item.get(key) is not None:
            value = item[key]
            values = value if isinstance(value, list) else [value]
            answers = [a.get("answer") if isinstance(a, dict) else a for a in values]  # VQAv2: [{"answer": ...}]
            return [str(a).strip() for a in answers if isinstance(a, (str, int, float)) and not isinstance(a, bool)]
    return []


def _image_keys(record: dict) -> set[str]:
    """Names the record's image goes by: file name without extension, and the image's number."""
    keys = set()
    image = record.get("image")
    names = [PurePosixPath(image.replace("\\", "/")).stem] if isinstance(image, str) and image else []
    names += [str(record[key]) for key in ("image_id", "imageId") if isinstance(record.get(key), (str, int))]
    for name in names:
        keys.add(name)
        number = re.search(r"(?:^|_)(\d+)$", name)  # COCO_val2014_000000262148 and 262148 are one image
        if number:
            keys.add(str(int(number.group(1))))
    return keys


def _question_key(record: dict) -> str | None:
    """The question's first line, case and spacing ignored (LLaVA appends instructions on later lines)."""
    text = record.get("question", record.get("text"))
    if not isinstance(text, str):
        turns = record.get("conversations") if isinstance(record.get("conversations"), list) else []
        human = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("human", "user")]
        text = human[-1] if human and isinstance(human[-1], str) else None
    if text is None:
        return None
    first = next((line for line in text.replace("<image>", " ").split("\n") if line.strip()), "")
    return " ".join(first.split()).casefold() or None
