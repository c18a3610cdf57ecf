"""CoIN's evaluation scripts (github.com/zackschen/CoIN, commit 4122465, ``ETrain/Eval/LLaVA/CoIN/``).

Each scorer computes what one script computes for one sample, quirks included; the task's
number is their mean, as each script divides its count of right answers by all results.
HiDe-LLaVA, MCITlib and CL-MoE copied CoIN's exact-match script for their own benchmarks,
so :func:`exact_nocase` serves them too. TextVQA goes through the m4c evaluator
(:mod:`.vqa_scripts`), as CoIN's ``eval_textvqa.py`` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample

# eval_science_qa.py's default --options (line 15).
SCIENCEQA_OPTIONS = ("A", "B", "C", "D", "E")
_SINGLE_CHARACTER_WORD = re.compile(r"\b(\w)\b")


def _first(references: Sequence[str]) -> str | None:
    """The record's single ``answer``, which these scripts compare against."""
    return references[0] if references else None


@per_sample("exact_nocase")
def exact_nocase(prediction: str, references: Sequence[str]) -> float:
    """Case-insensitive exact match to the record's one answer (reply.upper() == answer.upper()), nothing normalised.

    CoIN ``eval_vqav2.py`` and ``eval_vizwiz.py`` (line 28), HiDe-LLaVA and MCITlib
    ``eval_deepseek_r1.py`` (line 47, UCIT's question-answering tasks), CL-MoE
    ``llava/eval/CLMoE/eval_vqav2.py`` (line 28). Not VQA accuracy: "2" misses "two" and
    "yes." misses "yes".
    """
    answer = _first(references)
    return float(answer is not None and prediction.upper() == answer.upper())


def coin_scienceqa_letter(text: str) -> str | None:
    """The option eval_science_qa.py (lines 65-75) reads from a reply, or None where it fails.

    The reply as a whole if it is an option; its first character when it starts like
    ``"B. text"``; else the first one-character word, upper-cased, so "I think B" reads as
    "I" and "The answer is B." as "B".
    """
    if text in SCIENCEQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SCIENCEQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    words = _SINGLE_CHARACTER_WORD.findall(text)
    return words[0].upper() if words else None


@per_sample("coin_scienceqa")
def coin_scienceqa(prediction: str, references: Sequence[str]) -> float:
    """CoIN eval_science_qa.py (lines 65-78): the option the script reads from the reply is the answer's.

    The reading is :func:`coin_scienceqa_letter`. The script compares against ScienceQA's ``problems.json`` answer index; the record's
    answer letter is the same option. A letter outside A-E never counts.
    """
    answer = _first(references)
    gold = None if answer is None else coin_scienceqa_letter(answer.strip())
    letter = coin_scienceqa_letter(prediction)
    return float(letter is not None and letter in SCIENCEQA_OPTIONS and letter == gold)


@per_sample("coin_imagenet")
def coin_imagenet(prediction: str, references: Sequence[str]) -> float:
    """CoIN eval_ImagetNet.py (line 26): the label contains the reply or the reply the label, case-sensitive.

    So an empty reply counts as right (it is contained in every label), and "dog" is right
    for "hot dog".
    """
    answer = _first(references)
    return float(answer is not None and (answer in prediction or prediction in answer))


@per_sample("coin_gqa")
def coin_gqa(prediction: str, references: Sequence[str]) -> float:
    """CoIN's GQA: the reply with trailing periods removed and lower-cased equals the answer.

    convert_gqa_for_eval.py (line 14) prepares the prediction; the official GQA script
    (eval_gqa.py, line 352) compares it with the question's answer as written. Only
    accuracy is reproduced (the balanced test-dev questions, every one counted).
    """
    answer = _first(references)
    return float(answer is not None and prediction.rstrip(".").lower() == answer)


def _coin_box(text: str, cut_edges: bool) -> list[float] | None:
    """Four numbers as eval_grounding.py reads them, or None where it skips the sample.

    Both boxes lose their brackets (lines 64, 70); the prediction then also loses its first
    and last character (line 71, ``pred_bbox[1:-1]``), a slice meant for the brackets that
    were already removed, so ``[0.1, 0.2, 0.5, 0.9]`` reads as (0.1, 0.2, 0.5, 0.0).
    """
    inner = text.replace("[", "").replace("]", "")
    if cut_edges:
        inner = inner[1:-1]
    try:
        numbers = [float(part) for part in inner.split(",")]
    except ValueError:
        return None
    return numbers if len(numbers) == 4 else None


def coin_iou(box: Sequence[float], target: Sequence[float]) -> float:
    """eval_grounding.py's calculate_iou (lines 44-50): corners taken as given, 0 for a non-positive union."""
    x1, y1, x2, y2 = box
    tx1, ty1, tx2, ty2 = target
    inter = max(0, min(x2, tx2) - max(x1, tx1)) * max(0, min(y2, ty2) - max(y1, ty1))
    union = (x2 - x1) * (y2 - y1) + (tx2 - tx1) * (ty2 - ty1) - inter
    return inter / union if union > 0 else 0.0


@per_sample("coin_grounding")
def coin_grounding(prediction: str, references: Sequence[str]) -> float:
    """CoIN eval_grounding.py (lines 61-84): right when IoU > 0.5 of the box as the script misreads it.

    The prediction loses one character at each end after its brackets are removed
    (:func:`_coin_box`), so a box printed as ``[x1, y1, x2, y2]`` is scored with the last
    digit of y2 cut off, and with y2 = 0 when it has a single decimal. A reply that does not
    read as four numbers counts as wrong (the script skips it but divides by all results).
    The script scales both boxes by the image's longer side first, which leaves IoU
    unchanged and is not repeated here.
    """
    answer = _first(references)
    target = None if answer is None else _coin_box(answer, cut_edges=False)
    box = _coin_box(prediction, cut_edges=True)
    return float(box is not None and target is not None and coin_iou(box, target) > 0.5)


@per_sample("coin_ocrvqa")
def coin_ocrvqa(prediction: str, references: Sequence[str]) -> float:
    """CoIN eval_ocrvqa.py (lines 27-30): lower-cased exact match; a reply containing "Unanswerable" is wrong."""
    answer = _first(references)
    if answer is None or "Unanswerable" in prediction:
        return 0.0
    return float(prediction.lower() == answer.lower())
