"""Accepted answers kept in a file of their own, as some published evaluation sets ship them.

Two layouts, named by ``answers_format`` in a file task:

- ``by_question_id``: records with ``question_id`` and ``answers`` (strings or
  ``{"answer": ...}`` objects), as a list or under ``data`` or ``annotations``. TextVQA's
  ``TextVQA_0.5.1_val.json`` (``{"data": [...]}``) and VQAv2's official annotation file
  (``{"annotations": [...]}``) are of this kind: the ten human answers the ``vqa`` scorer needs.
- ``coco_captions_by_position``: a COCO caption file (``{"annotations": [{"image_id", "caption"}]}``)
  whose ``image_id`` is the 1-based position of the record in the evaluation file, as UCIT's
  ``val_coco_type_3000.json`` for its caption tasks.

The answers become each record's ``answers`` before the record is read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from mcit.errors import UserError

AnswersFormat = Literal["by_question_id", "coco_captions_by_position"]


class AnswerTable:
    """Accepted answers of an evaluation file's records, from a separate file."""

    def __init__(self, path: Path | str, layout: AnswersFormat) -> None:
        self.path, self.layout = Path(path), layout
        data = _read(self.path)
        self._answers: dict[Any, list[str]] = defaultdict(list)
        if layout == "by_question_id":
            for item in _items(data, self.path, ("data", "annotations")):
                if "question_id" not in item or "answers" not in item:
                    raise UserError(f"{self.path}: every record needs question_id and answers (got keys {sorted(item)[:6]})")
                answers = [a.get("answer") if isinstance(a, dict) else a for a in item["answers"]]
                self._answers[str(item["question_id"])] = [str(a) for a in answers if a is not None]
        else:
            for item in _items(data, self.path, ("annotations",)):
                if not isinstance(item.get("image_id"), int) or not isinstance(item.get("caption"), str):
                    raise UserError(f"{self.path}: every annotation needs an integer image_id and a caption string")
                self._answers[item["image_id"] - 1].append(item["caption"])

    def answers(self, index: int, record: Any) -> list[str] | None:
        """The accepted answers of the evaluation file's record ``index``, or None if the file has none."""
        if self.layout == "by_question_id":
            key = record.get("question_id", record.get("id")) if isinstance(record, dict) else None
            found = self._answers.get(str(key)) if key is not None else None
        else:
            found = self._answers.get(index)
        return found or None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such answers file") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read it as JSON ({error})") from None


def _items(data: Any, path: Path, keys: tuple[str, ...]) -> list[dict]:
    if isinstance(data, dict):
        data = next((data[k] for k in keys if isinstance(data.get(k), list)), None)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise UserError(f"{path}: expected a list of records (or one under {' or '.join(repr(k) for k in keys)})")
    return data
