"""MCITlib's evaluation scripts for MLLM-DCL and MLLM-ACL (github.com/Ghy0501/MCITlib, commit
2956dfd, ``LoRA-FT/llava/eval/CoIN/``; byte-identical to MLLM-CL's ``ETrain/Eval/LLaVA/CoIN/``
at commit 80bf389).

Each script divides its count of right answers by all results; the DCL scripts skip (count as
wrong) any reply containing "Unanswerable". MLLM-ACL's math task is scored by a GPT answer
extractor and its GUI task by an evaluation server: neither is reproduced here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from mcit.evaluation.scorers.base import SCORERS, Scorer, mean_score, per_sample

_SKIPPED = "Unanswerable"


@per_sample("mcitlib_ai2d")
def mcitlib_ai2d(prediction: str, references: Sequence[str]) -> float:
    """eval_ai2d.py (lines 29-52), MLLM-DCL's remote-sensing and driving tasks: the answer inside the reply.

    Lower-cased. A multi-word answer counts anywhere in the reply; a one-word answer loses its
    periods and, in a multi-word reply, must be followed by a space, period or comma or be
    preceded by a space; in a one-word reply it may appear anywhere ("cars" holds "car").
    """
    if not references or _SKIPPED in prediction:
        return 0.0
    reply, answer = prediction.lower(), references[0].lower()
    if " " in answer:
        return float(answer in reply)
    answer = answer.replace(".", "")
    if " " in reply:
        return float(any(piece in reply for piece in (" " + answer, answer + " ", answer + ".", answer + ",")))
    return float(answer in reply)


@per_sample("mcitlib_pvqa")
def mcitlib_pvqa(prediction: str, references: Sequence[str]) -> float:
    """eval_pvqa.py (lines 26-31), MLLM-DCL's medical task: the lower-cased answer is a substring of the reply."""
    if not references or _SKIPPED in prediction:
        return 0.0
    return float(references[0].lower() in prediction.lower())


@per_sample("mcitlib_finvis")
def mcitlib_finvis(prediction: str, references: Sequence[str]) -> float:
    """eval_finvis.py (lines 27-33), MLLM-DCL's finance task: exact match without spaces and periods in the reply.

    Both are lower-cased; only the reply loses its spaces and periods.
    """
    if not references or _SKIPPED in prediction:
        return 0.0
    return float(prediction.lower().replace(" ", "").replace(".", "") == references[0].lower())


def _image_source(sample) -> str:
    """The prefix of the sample's image file name before its first "_" (eval_sci.py line 34)."""
    image = sample.images[0] if sample.images else None
    path = getattr(image, "path", None)
    return PurePosixPath(str(path)).name.split("_")[0] if path is not None else ""


class SciScorer(Scorer):
    """eval_sci.py (lines 29-56), MLLM-DCL's science task: a rule per source, read from the image file name.

    AI2D, TQA, VQA and SciVerse images (file names starting "AI2D_", "TQA_", ...) need the
    lower-cased reply to equal the answer; the rest (MapQA) counts the answer inside the reply,
    and for a "Which states ..." question the share of the answer's comma-separated items
    that are items of the reply.
    """

    needs_samples = True
    EXACT_SOURCES = frozenset({"AI2D", "TQA", "VQA", "SciVerse"})

    def score(self, predictions, references, image_sizes=None, samples=None):
        if samples is None:
            raise ValueError("mcitlib_sci reads each sample's question and image file name: pass samples")
        return mean_score([self.sample_score(p, r, s) for p, r, s in zip(predictions, references, samples, strict=True)])

    def sample_score(self, prediction: str, references: Sequence[str], sample) -> float:
        """One sample's credit (0, 1, or a share for a "Which states" list)."""
        if not references or _SKIPPED in prediction:
            return 0.0
        reply, answer = prediction.lower(), references[0].lower()
        if _image_source(sample) in self.EXACT_SOURCES:
            return float(reply == answer)
        if "Which states" in sample.prompt:
            items, replied = answer.split(","), reply.split(",")
            return sum(item in replied for item in items) / len(items)
        return float(answer in reply)


SCORERS.register(
    "mcitlib_sci",
    help="MCITlib eval_sci.py (MLLM-DCL science): exact match for AI2D/TQA/VQA/SciVerse images, containment and partial credit for MapQA.",
)(SciScorer())


@per_sample("mcitlib_ocr")
def mcitlib_ocr(prediction: str, references: Sequence[str]) -> float:
    """eval_ocr.py (lines 58-64), MLLM-ACL's OCR task (OCRBench): any answer inside the reply, lower-cased, newlines removed.

    The script's rule for the "Handwritten Mathematical Expression Recognition" category
    (spaces removed, case kept; lines 49-56) needs the record's ``answer_type``, which
    mcit does not read: such samples get the rule above. The script reports the count of
    hits divided by 10 (OCRBench's 1000 questions as a percentage); this is hits / samples.
    """
    reply = prediction.lower().strip().replace("\n", "")
    return float(any(answer.lower().strip().replace("\n", "") in reply for answer in references))


def _squeezed(text: str) -> str:
    return text.lower().strip().replace(" ", "").replace("\n", "").replace(".", "")


@per_sample("mcitlib_sat")
def mcitlib_sat(prediction: str, references: Sequence[str]) -> float:
    """eval_sat.py (lines 33-39), MLLM-ACL's visual-perception task (CV-Bench): the answer inside the reply.

    Both are lower-cased without spaces, newlines and periods, so "A" misses "(A)".
    """
    return float(bool(references) and _squeezed(references[0]) in _squeezed(prediction))
