"""Paper-compatible scorers: each reproduces one published evaluation script, quirks included.

A task names one as its ``paper_scorer``; the evaluation scores the same answers with it and
with the task's own ``scorer`` and reports both (docs/scorers.md, "Paper-compatible scores").
These scorers exist so that a published number can be reproduced from the same predictions;
the accuracy matrix and the metrics use the task's own scorer. Every docstring names the
script and lines it follows; the cases in tests/unit/test_paper_scorers.py come from them.

Modules, by the code they follow: ``coin`` (CoIN, and the exact match HiDe-LLaVA, MCITlib
and CL-MoE copied from it), ``mcitlib`` (MCITlib / MLLM-CL), ``vqa_scripts`` (the official
``vqaEval.py``, the m4c TextVQA evaluator, Prismatic's VQAv2), ``prismatic`` (Prismatic's
GQA and RefCOCO), ``llava`` (LLaVA-1.5's ScienceQA and POPE).
"""

from mcit.evaluation.scorers.paper import coin, llava, mcitlib, prismatic, vqa_scripts  # noqa: F401  (they register)
