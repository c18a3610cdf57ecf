"""Caption metrics with pycocoevalcap (the COCO caption evaluation): BLEU-1..4, METEOR, ROUGE-L, CIDEr.

The task's score is the mean of the corpus-level metrics, which is what MCITlib reports for
UCIT's caption tasks (it averages BLEU-1..4, METEOR, ROUGE-L and CIDEr). The COCO evaluation
tokenizes with Stanford's PTB tokenizer and computes METEOR with METEOR 1.5, both Java
programs shipped in pycocoevalcap. Without Java on the PATH, captions are tokenized in Python
(lower-cased, punctuation split off and dropped as the PTB wrapper drops it) and METEOR is
left out of the mean; the score's notes say which parts ran. SPICE is not computed (it
downloads Stanford CoreNLP models at run time).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from mcit.errors import UserError
from mcit.evaluation.scorers.base import SCORERS, Scorer, TaskScore

BLEU = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
# pycocoevalcap's PTB wrapper drops these tokens after tokenizing.
_PTB_DROPPED = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_PY_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def java_available() -> bool:
    return shutil.which("java") is not None


def python_tokenize(text: str) -> str:
    """Lower-cased words with punctuation split off and dropped (the no-Java stand-in for PTB)."""
    tokens = _PY_TOKEN.findall(text.lower().replace("\n", " "))
    return " ".join(token for token in tokens if token not in _PTB_DROPPED and token.strip(".-"))


def _modules():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError as error:
        raise UserError(f"caption scoring needs pycocoevalcap: pip install 'mcit[captions]' ({error})") from None
    return Bleu, Cider, Meteor, Rouge, PTBTokenizer


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keep the Java tools' progress lines ("PTBTokenizer tokenized ...") off the terminal."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _clean(text: str) -> str:
    # METEOR's stdio protocol separates fields with "|||" and lines with newlines.
    return " ".join(text.replace("|||", " ").split())


class CaptionScorer(Scorer):
    """BLEU-1..4, METEOR (with Java), ROUGE-L and CIDEr; the score is their mean."""

    def __init__(self, use_java: bool | None = None) -> None:
        self.use_java = use_java

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], image_sizes=None) -> TaskScore:
        if len(predictions) != len(references) or not predictions:
            raise ValueError("caption scoring needs one prediction per sample and at least one sample")
        if any(not refs for refs in references):
            raise ValueError("every caption sample needs at least one reference caption")
        Bleu, Cider, Meteor, Rouge, PTBTokenizer = _modules()
        java = java_available() if self.use_java is None else self.use_java
        ids = list(range(len(predictions)))
        res = {i: [_clean(p)] for i, p in zip(ids, predictions)}
        gts = {i: [_clean(r) for r in refs] for i, refs in zip(ids, references)}
        if java:
            tokenizer = PTBTokenizer()
            with _quiet_stderr():
                res = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in res.items()})
                gts = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in gts.items()})
            notes = ["PTB tokenizer (Java)", "METEOR 1.5 (Java)"]
        else:
            res = {i: [python_tokenize(c) for c in caps] for i, caps in res.items()}
            gts = {i: [python_tokenize(c) for c in caps] for i, caps in gts.items()}
            notes = ["no Java: Python tokenizer instead of PTB, METEOR not computed"]

        parts: dict[str, float] = {}
        per_metric: dict[str, list[float]] = {}
        bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
        for name, corpus, each in zip(BLEU, bleu, bleu_each):
            parts[name], per_metric[name] = float(corpus), [float(v) for v in each]
        if java:
            meteor = Meteor()
            try:
                corpus, each = meteor.compute_score(gts, res)
            finally:  # pycocoevalcap stops its METEOR process only when garbage-collected
                meteor.meteor_p.stdin.close()
                meteor.meteor_p.wait(timeout=60)
            parts["METEOR"], per_metric["METEOR"] = float(corpus), [float(v) for v in each]
        for name, metric in (("ROUGE-L", Rouge()), ("CIDEr", Cider())):
            corpus, each = metric.compute_score(gts, res)
            parts[name], per_metric[name] = float(corpus), [float(v) for v in each]

        per_sample = [sum(values[i] for values in per_metric.values()) / len(per_metric) for i in ids]
        return TaskScore(sum(parts.values()) / len(parts), per_sample, parts, tuple(notes))


SCORERS.register("caption", help="Captions: mean of BLEU-1..4, METEOR (with Java), ROUGE-L and CIDEr (pycocoevalcap), as MCITlib reports UCIT's caption tasks.")(CaptionScorer())
