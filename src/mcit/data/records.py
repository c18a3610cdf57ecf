"""One record of a data file, checked and turned into a sample's fields (no pixels).

Two layouts are read, the ones datasets ship:

- LLaVA conversations: ``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}]}``.
  Every exchange is kept: the last assistant turn is the answer, earlier turns are the
  sample's history (all trained; given as context when evaluating).
- Question/answer records (VQAv2, TextVQA, GQA style): ``{"question_id" (or "id"), "image"?,
  "question" (or "text"), "answer"?, "answers"?}``, ``answers`` being accepted answers (ten
  human answers in VQAv2, as strings or ``{"answer": ...}`` objects). ``answer`` may be a
  number (read as its text) or a list of accepted answers.

``image`` is one path or a list of paths (several images per record); ``images`` is accepted
as the same; a record without either may name its image through ``image_template``
(VQAv2's ``"COCO_val2014_{image_id:012d}.jpg"``, GQA's ``"{imageId}.jpg"``). A Hugging Face
dataset's rows carry :class:`~mcit.data.images.StoredImage` references instead of paths. ``<image>`` in a user turn's text marks where an image goes: the number of
markers must equal the number of images, or be zero (images then go first). ``answers`` and
a hidden ``skill`` (or ``task``) label may accompany either layout.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any, NamedTuple

from mcit.data.images import StoredImage
from mcit.data.sample import IMAGE_MARKER

_HUMAN = {"human", "user"}
_GPT = {"gpt", "assistant"}


class Entry(NamedTuple):
    """One sample without its pixels (a 1M-record pool keeps only these in memory)."""

    id: str
    prompt: str
    answer: str
    images: tuple[str | StoredImage, ...]  # resolved paths, or images stored in a dataset
    references: tuple[str, ...]
    skill: str
    history: tuple[tuple[str, str], ...]
    record: int  # index of the source record, for error messages


class Problem(Exception):
    """A record's first problem; ``kind`` ("without an answer") groups records in the summary."""

    def __init__(self, kind: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.field, self.detail = kind, field, detail


def record_id(record: Any) -> str | None:
    """The record's id (``id``, else ``question_id``) as a string, or ``None``."""
    if not isinstance(record, dict):
        return None
    value = record.get("id", record.get("question_id"))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # many files number their records
    return value if isinstance(value, str) and value else None


def parse_record(
    record: Any,
    index: int,
    resolve: Callable[[str], str],
    require_answer: bool,
    template: str | None = None,
    answer_key: str = "answer",
    image_template: str | None = None,
) -> Entry:
    """The record's sample fields, image paths resolved by ``resolve``.

    ``template`` (with ``{question}``) wraps the question of a question/answer record, for
    files that carry a bare question ("{question}\nAnswer the question using a single word
    or phrase."), unless the question already carries the template's text around it (LLaVA's
    TextVQA questions end with that instruction); conversation records keep their own text.
    ``answer_key`` names the field holding a question/answer record's answer (CoIN's
    grounding file: ``answer_bbox``). ``image_template`` makes the image path of a
    question/answer record that names none from its fields (``"{imageId}.jpg"``).

    Raises:
        Problem: The record's first problem (field and detail).
    """
    if not isinstance(record, dict):
        raise Problem("that are not objects", "(record)", f"must be an object, got {kind(record)}")
    identifier = record_id(record)
    if identifier is None:
        key = "id" if "id" in record or "question_id" not in record else "question_id"
        detail = "missing" if key not in record else f"must be a non-empty string or integer, got {record[key]!r}"
        raise Problem("without a valid id", key, detail)
    references = _references(record.get("answers"))
    if not references and isinstance(record.get(answer_key), list):
        references = _references(record[answer_key])
    conversation = "conversations" in record or not any(key in record for key in ("question", "text"))
    if conversation:
        turns = _conversation(record.get("conversations"))
    else:
        turns = [_question(record, template, answer_key)]
    # Conversations name their images themselves (a text-only one names none): the template is
    # for question files that give only an image id (VQAv2, GQA, TextVQA).
    images = _images(record, None if conversation else image_template)
    _check_markers(turns, len(images))
    user, answer, field, missing = turns[-1]
    if answer is None and references:
        answer = references[0]  # evaluation files may give accepted answers instead of a reply
    if require_answer and not answer:
        raise Problem("without an answer", field, "empty answer" if answer is not None else missing)
    history = []
    for earlier_user, earlier_answer, earlier_field, earlier_missing in turns[:-1]:
        if not earlier_answer:
            raise Problem("without an answer", earlier_field, "empty answer" if earlier_answer is not None else earlier_missing)
        history.append((earlier_user, earlier_answer))
    resolved = tuple(resolve(image) if isinstance(image, str) else image for image in images)
    return Entry(identifier, user, answer or "", resolved, references, _skill(record), tuple(history), index)


def _conversation(conversations: Any) -> list[tuple[str, str | None, str, str]]:
    """(user text, answer or None, the answer's field, what to say if it is missing) per exchange."""
    if not isinstance(conversations, list) or not conversations:
        detail = (
            "missing (give conversations, or a question)" if conversations is None
            else f"must be a non-empty list of turns, got {conversations!r:.40}"
        )
        raise Problem("with missing or empty conversations", "conversations", detail)
    turns: list[tuple[str, str | None, str, str]] = []
    for k, turn in enumerate(conversations):
        field = f"conversations[{k}]"
        if not isinstance(turn, dict):
            raise Problem("with a malformed turn", field, f"must be an object with 'from' and 'value', got {kind(turn)}")
        for key in ("from", "value"):
            if not isinstance(turn.get(key), str):
                detail = "missing" if key not in turn else f"must be a string, got {kind(turn[key])}"
                raise Problem("with a malformed turn", f"{field}.{key}", detail)
        role, value = turn["from"].lower(), turn["value"]
        human_expected = k % 2 == 0
        if role in _HUMAN and human_expected:
            turns.append((value.strip(), None, "conversations", f"no gpt turn answers {field}"))
        elif role in _GPT and not human_expected:
            turns[-1] = (turns[-1][0], value.strip(), f"{field}.value", "")
        else:
            detail = (
                f"unknown speaker {turn['from']!r} (expected human or gpt)"
                if role not in _HUMAN | _GPT
                else f"got {turn['from']!r} where a {'human' if human_expected else 'gpt'} turn belongs "
                "(turns alternate, starting with human)"
            )
            raise Problem("with a malformed turn", f"{field}.from", detail)
    return turns


def _question(record: dict, template: str | None, answer_key: str) -> tuple[str, str | None, str, str]:
    key = "question" if "question" in record else "text"
    if not isinstance(record[key], str) or not record[key].strip():
        raise Problem("with a bad question", key, f"must be a non-empty string, got {record[key]!r:.40}")
    question = record[key].strip()
    if template is not None and not _carries_template(question, template):
        question = template.replace("{question}", question)
    answer = record.get(answer_key)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # counts and numbers (CLEVR-Math, TallyQA) are often stored as JSON numbers
    elif isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
        answer = answer[0]  # several accepted answers in `answer` (OCRBench): the rest are in `answers`
    if answer is not None and not isinstance(answer, str):
        raise Problem("with a bad answer", answer_key, f"must be a string, a number or a list of strings, got {kind(answer)}")
    return question, None if answer is None else answer.strip(), answer_key, f"no answer (give {answer_key} or answers)"


def _carries_template(question: str, template: str) -> bool:
    """Whether ``question`` already has the template's text before and after ``{question}``."""
    before, after = (part.strip() for part in template.split("{question}", 1))
    return bool(before or after) and question.startswith(before) and question.endswith(after)


def template_fields(image_template: str) -> list[str]:
    """The record fields an ``image_template`` names (``"{image_id:012d}.jpg"`` -> ``["image_id"]``).

    Raises:
        ValueError: A malformed template, or a field that is not a plain name (``{a.b}``, ``{a[0]}``, ``{}``).
    """
    usage = f"image_template must name record fields as {{field}} or {{field:format}}, got {image_template!r}"
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(image_template) if name is not None]
    except ValueError as error:
        raise ValueError(f"{usage} ({error})") from None
    if not fields or not all(name.isidentifier() for name in fields):
        raise ValueError(usage)
    return fields


def _templated_image(record: dict, image_template: str) -> str:
    fields = template_fields(image_template)
    for name in fields:
        if name not in record:
            raise Problem("without the field image_template names", name, f"missing (image_template {image_template!r} names it)")
    try:
        return image_template.format_map({name: record[name] for name in fields})
    except (ValueError, TypeError) as error:
        values = ", ".join(f"{name}={record[name]!r}" for name in fields)
        detail = f"{values} does not fit image_template {image_template!r}: {error}"
        raise Problem("whose fields do not fit image_template", fields[0], detail) from None


def _images(record: dict, image_template: str | None = None) -> list[str | StoredImage]:
    key = "image" if "image" in record else "images"
    value = record.get(key)
    if value is None:
        return [_templated_image(record, image_template)] if image_template is not None and key not in record else []
    paths = value if isinstance(value, list) else [value]
    if paths and all(isinstance(p, StoredImage) or (isinstance(p, str) and p) for p in paths):
        return paths
    if not paths or not all(isinstance(p, str) and p for p in paths):
        detail = "empty path" if value == "" else f"must be a path or a non-empty list of paths, got {value!r:.40}"
        raise Problem("with a bad image field", key, detail)
    return paths


def _check_markers(turns: list[tuple[str, str | None, str, str]], images: int) -> None:
    markers = sum(turn[0].count(IMAGE_MARKER) for turn in turns)
    if markers and markers != images:
        raise Problem(
            "whose <image> markers do not match its images", "image",
            f"{markers} {IMAGE_MARKER} marker{'s' * (markers != 1)} in the text but {images} image{'s' * (images != 1)}",
        )


def _references(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        value = [a.get("answer") if isinstance(a, dict) else a for a in value]  # VQAv2: [{"answer": ...}]
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise Problem("with a bad answers field", "answers", f"must be a non-empty list of strings, got {value!r:.40}")
    return tuple(a.strip() for a in value)


def _skill(record: dict) -> str:
    for key in ("skill", "task"):
        if key in record:
            if not isinstance(record[key], str):
                raise Problem("with a bad skill label", key, f"must be a string, got {kind(record[key])}")
            return record[key]
    return ""


def kind(value: Any) -> str:
    """A JSON value's kind, for messages ("an object", "a list", ...)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
