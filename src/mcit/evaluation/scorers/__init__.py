"""Scorers of evaluation answers, registered in :data:`SCORERS` so a task names its scorer.

One module per family of metrics: ``text`` (exact matches, class names), ``vqa`` (the official
VQA accuracy, with ``normalize``), ``anls``, ``relaxed`` (chart QA), ``choice`` (option
letters), ``captions`` (pycocoevalcap) and ``grounding`` (boxes, IoU). ``base`` says what a
scorer is. The package ``paper`` holds the paper-compatible scorers, one per published
evaluation script, that a task may name as its ``paper_scorer``.
"""

from mcit.evaluation.scorers import anls, captions, choice, grounding, paper, relaxed, text, vqa  # noqa: F401  (they register)
from mcit.evaluation.scorers.base import SCORERS, Scorer, TaskScore, per_sample
from mcit.evaluation.scorers.choice import extract_choice
from mcit.evaluation.scorers.normalize import normalize_answer

__all__ = ["SCORERS", "Scorer", "TaskScore", "extract_choice", "normalize_answer", "per_sample"]
