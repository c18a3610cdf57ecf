"""VQA accuracy as three published scripts compute it, each with its own answer processing.

All three score a reply by the leave-one-out mean over the human answers of
min(#other annotators who gave the reply / 3, 1); they differ in what they normalise:

* ``vqa_official``: the VQA API's ``vqaEval.py`` (github.com/GT-Vision-Lab/VQA, commit
  a013f00, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` lines 86-109) normalises the
  reply and the answers only when the answers disagree;
* ``textvqa_m4c``: the m4c ``TextVQAAccuracyEvaluator`` that LLaVA (``llava/eval/m4c_evaluator.py``),
  CoIN (``ETrain/Eval/LLaVA/CoIN/m4c_evaluator.py``) and Prismatic's vlm-evaluation use for
  TextVQA always normalises both, after its own tokenising step;
* ``prismatic_vqav2``: vlm-evaluation's VQAv2 evaluator (github.com/TRI-ML/vlm-evaluation,
  commit d9f5896, ``vlm_eval/util/evaluation/vqav2/eval.py`` lines 420-446) normalises the
  reply fully but the human answers only for punctuation (no lower-casing, no number words).

mcit's own ``vqa`` scorer always normalises both fully (:mod:`mcit.evaluation.scorers.vqa`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample
from mcit.evaluation.scorers.normalize import COMMA_BETWEEN_DIGITS, process_digit_article, process_punctuation

# m4c's COMMA_STRIP (m4c_evaluator.py line 153); vqaEval.py's commaStrip (line 63) and its
# periodStrip (whose "(?!<=\d)" is a lookahead that always holds) are normalize's patterns.
_M4C_COMMA = re.compile(r"(?<=\d)(,)+(?=\d)")
# Every script passes re.UNICODE (= 32) where re.sub takes its count, so at most 32
# periods are removed (vqaEval.py line 137, m4c_evaluator.py line 195).
_PERIODS_REMOVED = int(re.UNICODE)


def script_punctuation(text: str, comma_between_digits: re.Pattern[str] = COMMA_BETWEEN_DIGITS) -> str:
    """The scripts' processPunctuation: mcit's, with at most 32 stray periods removed."""
    return process_punctuation(text, comma_between_digits, _PERIODS_REMOVED)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def leave_one_out(reply: str, answers: Sequence[str]) -> float:
    """Mean over the answers of min(#other answers equal to the reply / 3, 1); 0 with no answers.

    With a single answer no other annotator is left, so every reply scores 0, as in the scripts.
    """
    if not answers:
        return 0.0
    matches = sum(answer == reply for answer in answers)
    return sum(min((matches - (answer == reply)) / 3.0, 1.0) for answer in answers) / len(answers)


@per_sample("vqa_official")
def vqa_official(prediction: str, references: Sequence[str]) -> float:
    """VQA accuracy as the official vqaEval.py computes it (lines 86-109).

    Newlines and tabs become spaces and the ends are stripped. Only when the human answers
    are not all the same are they and the reply normalised (punctuation, lower case, number
    words, articles, contractions). So against ten identical "yes" the reply "Yes" scores 0
    and against ten "Two" the reply "2" scores 0, while mcit's ``vqa`` scores both 1.
    """
    answers = [_clean(answer) for answer in references]
    reply = _clean(prediction)
    if len(set(answers)) > 1:
        answers = [process_digit_article(script_punctuation(answer)) for answer in answers]
        reply = process_digit_article(script_punctuation(reply))
    return leave_one_out(reply, answers)


def m4c_answer(text: str) -> str:
    """m4c's EvalAIAnswerProcessor (m4c_evaluator.py lines 181-218).

    Lower case, commas and question marks removed and "'s" split off ("man's" -> "man 's")
    first, then the VQA punctuation, number-word, article and contraction rules.
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = _clean(text)
    return process_digit_article(script_punctuation(text, _M4C_COMMA))


@per_sample("textvqa_m4c")
def textvqa_m4c(prediction: str, references: Sequence[str]) -> float:
    """TextVQA accuracy as the m4c evaluator computes it (m4c_evaluator.py lines 225-257).

    Reply and human answers are always processed by :func:`m4c_answer`. The script asserts
    ten answers; other counts get the same leave-one-out mean.
    """
    return leave_one_out(m4c_answer(prediction), [m4c_answer(answer) for answer in references])


@per_sample("prismatic_vqav2")
def prismatic_vqav2(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 accuracy as Prismatic's vlm-evaluation computes it (vqav2/eval.py lines 427-446).

    The reply is fully normalised; the human answers only get the punctuation rule, so a
    capitalised or spelled-out human answer ("Yes", "two") never matches.
    """
    reply = process_digit_article(script_punctuation(_clean(prediction)))
    return leave_one_out(reply, [script_punctuation(answer) for answer in references])
