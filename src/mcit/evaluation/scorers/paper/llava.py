"""LLaVA-1.5's evaluation scripts for ScienceQA and POPE, as the Adapt-∞ code runs them
(github.com/adymaharana/adapt-inf, commit d1b1b25, ``llava/eval/``; the same files as
haotian-liu/LLaVA's). LLaVA's TextVQA script is the m4c evaluator (``textvqa_m4c``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample
from mcit.evaluation.scorers.paper.coin import SCIENCEQA_OPTIONS

_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def llava_scienceqa_letter(text: str) -> str | None:
    """The option eval_science_qa.py (lines 66-76) reads from a reply, or None where it fails.

    The reply as a whole if it is an option; its first character when it starts like
    ``"B. text"``; else the letter of exactly one "The answer is X." in it. Unlike CoIN's
    copy of the script, a lower-case "b" or "I think B" fails.
    """
    if text in SCIENCEQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SCIENCEQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else None


@per_sample("llava_scienceqa")
def llava_scienceqa(prediction: str, references: Sequence[str]) -> float:
    """LLaVA eval_science_qa.py (lines 66-77): the option the script reads from the reply is the answer's.

    The reading is :func:`llava_scienceqa_letter`.
    """
    gold = llava_scienceqa_letter(references[0].strip()) if references else None
    letter = llava_scienceqa_letter(prediction)
    return float(letter is not None and letter in SCIENCEQA_OPTIONS and letter == gold)


def llava_pope_reply(text: str) -> str:
    """eval_pope.py's reading of a reply (lines 11-20): "no" if its first sentence has the word No, no or not, else "yes"."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


@per_sample("llava_pope")
def llava_pope(prediction: str, references: Sequence[str]) -> float:
    """POPE accuracy as eval_pope.py computes it (lines 22-56): the read reply against the label.

    A label other than "no" counts as "yes" (line 23). The script also prints precision,
    recall and F1 of "yes"; the accuracy is what this scorer averages.
    """
    label = "no" if references and references[0] == "no" else "yes"
    return float(llava_pope_reply(prediction) == label)
