"""Paper-compatible scorers against what the published evaluation scripts compute.

Each case is one sample run through the named script: the expected value is the script's
accuracy on a one-result file holding that prediction and answer (1 or 0; VQA accuracy's
fractions for the leave-one-out scripts). The comment above each group names the file and
lines it follows. Commits: CoIN 4122465 (ETrain/Eval/LLaVA/CoIN/), GT-Vision-Lab/VQA a013f00,
MCITlib 2956dfd (LoRA-FT/llava/eval/CoIN/), vlm-evaluation d9f5896, adapt-inf d1b1b25
(llava/eval/), CL-MoE a9eff1c, HiDe-LLaVA 4dd0793.
"""

from __future__ import annotations

import pytest

from mcit.data.images import ImageRef
from mcit.data.sample import Sample
from mcit.evaluation.scorers import SCORERS

TEN = 10

CASES = [
    # CoIN eval_vqav2.py / eval_vizwiz.py lines 24-29, HiDe-LLaVA and MCITlib eval_deepseek_r1.py
    # lines 43-48, CL-MoE llava/eval/CLMoE/eval_vqav2.py lines 24-29: pred.upper() == answer.upper()
    ("exact_nocase", "Yes", ["yes"], 1.0),
    ("exact_nocase", "2", ["two"], 0.0),
    ("exact_nocase", "yes.", ["yes"], 0.0),
    ("exact_nocase", "Golden Retriever", ["golden retriever"], 1.0),
    # CoIN eval_science_qa.py lines 65-78: option, "X. " prefix, else the first one-character word
    ("coin_scienceqa", "B", ["B"], 1.0),
    ("coin_scienceqa", "B. a cat", ["B"], 1.0),
    ("coin_scienceqa", "A is a complete sentence.", ["A"], 1.0),
    ("coin_scienceqa", "The answer is C.", ["C"], 1.0),
    ("coin_scienceqa", "b", ["B"], 1.0),
    ("coin_scienceqa", "I think B", ["B"], 0.0),  # reads "I"
    ("coin_scienceqa", "none of them", ["A"], 0.0),
    # CoIN eval_ImagetNet.py line 26: answer in reply or reply in answer, case-sensitive
    ("coin_imagenet", "golden retriever", ["golden retriever"], 1.0),
    ("coin_imagenet", "dog", ["hot dog"], 1.0),
    ("coin_imagenet", "a tench fish", ["tench"], 1.0),
    ("coin_imagenet", "", ["tench"], 1.0),  # the empty reply is in every label
    ("coin_imagenet", "Tench", ["tench"], 0.0),
    # CoIN convert_gqa_for_eval.py line 14 + eval_gqa.py line 352
    ("coin_gqa", "Yes.", ["yes"], 1.0),
    ("coin_gqa", "left", ["right"], 0.0),
    ("coin_gqa", "Yes", ["Yes"], 0.0),  # only the prediction is lower-cased
    # CoIN eval_grounding.py lines 61-84: one character too many cut from the reply, IoU > 0.5
    ("coin_grounding", "[0.1, 0.2, 0.5, 0.9]", ["[0.1, 0.2, 0.5, 0.9]"], 0.0),  # read as y2 = 0.0
    ("coin_grounding", "[0.12, 0.30, 0.55, 0.89]", ["[0.12, 0.30, 0.55, 0.89]"], 1.0),  # y2 read as 0.8
    ("coin_grounding", "[0.10, 0.20, 0.50, 0.90]", ["[0.1, 0.2, 0.5, 0.9]"], 1.0),
    ("coin_grounding", "[0.00, 0.00, 0.50, 1.00]", ["[0.0, 0.0, 1.0, 1.0]"], 0.0),  # IoU exactly 0.5
    ("coin_grounding", "the dog on the left", ["[0.1, 0.2, 0.5, 0.9]"], 0.0),
    # CoIN eval_ocrvqa.py lines 24-30
    ("coin_ocrvqa", "Harry Potter", ["harry potter"], 1.0),
    ("coin_ocrvqa", "harry", ["harry potter"], 0.0),
    ("coin_ocrvqa", "Unanswerable", ["Unanswerable"], 0.0),  # skipped, still counted
    # VQA vqaEval.py lines 86-109: normalised only when the ten answers disagree
    ("vqa_official", "Yes", ["yes"] * TEN, 0.0),
    ("vqa_official", "2", ["Two"] * TEN, 0.0),
    ("vqa_official", "2", ["Two"] + ["two"] * 9, 1.0),
    ("vqa_official", "yes", ["yes"] * 2 + ["no"] * 8, 0.6),
    ("vqa_official", "Yes", ["yes"] * 3 + ["no"] * 7, 0.9),
    ("vqa_official", "yes\n", ["yes"] * TEN, 1.0),
    # CoIN / LLaVA m4c_evaluator.py lines 181-257: always normalised, after its own tokenising
    ("textvqa_m4c", "yes,no", ["yes no"] * TEN, 0.0),  # the comma is dropped, not spaced
    ("textvqa_m4c", "Coca-Cola", ["coca cola"] * 3 + ["pepsi"] * 7, 0.9),
    ("textvqa_m4c", "2", ["Two"] * TEN, 1.0),
    ("textvqa_m4c", "Man's", ["man's"] * TEN, 1.0),
    # vlm-evaluation vlm_eval/util/evaluation/vqav2/eval.py lines 427-446
    ("prismatic_vqav2", "yes", ["Yes"] * TEN, 0.0),  # the human answers are not lower-cased
    ("prismatic_vqav2", "two", ["2"] * TEN, 1.0),
    ("prismatic_vqav2", "2", ["two"] * TEN, 0.0),
    ("prismatic_vqav2", "Yes!", ["yes"] * 2 + ["no"] * 8, 0.6),
    # vlm-evaluation vlm_eval/tasks/harnesses/gqa.py line 281 + gqa/eval.py line 408
    ("prismatic_gqa", "Yes.", ["yes"], 1.0),
    ("prismatic_gqa", "t-shirt", ["t-shirt"], 0.0),
    # vlm-evaluation vlm_eval/tasks/harnesses/refcoco.py lines 292-362
    ("prismatic_refcoco", "[0.1, 0.2, 0.5, 0.9]", ["[0.1, 0.2, 0.5, 0.9]"], 1.0),
    ("prismatic_refcoco", "(0.1, 0.2, 0.5, 0.9)", ["[0.1, 0.2, 0.5, 0.9]"], 0.0),  # a tuple is invalid
    ("prismatic_refcoco", "[10, 20, 50, 90]", ["[0.1, 0.2, 0.5, 0.9]"], 0.0),
    ("prismatic_refcoco", "[0.5, 0.2, 0.1, 0.9]", ["[0.1, 0.2, 0.5, 0.9]"], 0.0),  # corners swapped
    ("prismatic_refcoco", "[0.0, 0.0, 0.5, 1.0]", ["[0.0, 0.0, 1.0, 1.0]"], 1.0),  # IoU exactly 0.5
    # adapt-inf / LLaVA llava/eval/eval_science_qa.py lines 66-77
    ("llava_scienceqa", "B", ["B"], 1.0),
    ("llava_scienceqa", "b", ["B"], 0.0),
    ("llava_scienceqa", "The answer is C.", ["C"], 1.0),
    ("llava_scienceqa", "The answer is C", ["C"], 0.0),  # its pattern needs a character after the letter
    ("llava_scienceqa", "A is a complete sentence.", ["A"], 0.0),
    # adapt-inf / LLaVA llava/eval/eval_pope.py lines 8-56 (accuracy)
    ("llava_pope", "No, there is not.", ["no"], 1.0),
    ("llava_pope", "Yes, there is a dog.", ["yes"], 1.0),
    ("llava_pope", "There is no dog.", ["yes"], 0.0),
    ("llava_pope", "Nope", ["no"], 0.0),  # read as yes
    # MCITlib eval_ai2d.py lines 29-52 (MLLM-DCL RS, AD)
    ("mcitlib_ai2d", "residential area", ["residential"], 1.0),
    ("mcitlib_ai2d", "cars", ["car"], 1.0),
    ("mcitlib_ai2d", "the scar is red", ["car"], 1.0),  # "car " is inside "scar is"
    ("mcitlib_ai2d", "green trees", ["green trees"], 1.0),
    ("mcitlib_ai2d", "a road", ["river"], 0.0),
    ("mcitlib_ai2d", "Unanswerable", ["unanswerable"], 0.0),
    # MCITlib eval_pvqa.py lines 26-31 (MLLM-DCL Med)
    ("mcitlib_pvqa", "Yes, it is.", ["yes"], 1.0),
    ("mcitlib_pvqa", "eyes", ["yes"], 1.0),
    ("mcitlib_pvqa", "no", ["yes"], 0.0),
    # MCITlib eval_finvis.py lines 27-33 (MLLM-DCL Fin)
    ("mcitlib_finvis", "A.", ["a"], 1.0),
    ("mcitlib_finvis", "Yes", ["Yes"], 1.0),
    ("mcitlib_finvis", "B C", ["bc"], 1.0),
    ("mcitlib_finvis", "B", ["a"], 0.0),
    # MCITlib eval_ocr.py lines 41-64 (MLLM-ACL OCR)
    ("mcitlib_ocr", "The sign says STOP", ["stop"], 1.0),
    ("mcitlib_ocr", "S T O P", ["stop"], 0.0),
    ("mcitlib_ocr", "exit", ["stop", "EXIT"], 1.0),  # any of a list of answers
    # MCITlib eval_sat.py lines 33-39 (MLLM-ACL VP)
    ("mcitlib_sat", "(A)", ["(A)"], 1.0),
    ("mcitlib_sat", "The answer is (B).", ["(B)"], 1.0),
    ("mcitlib_sat", "A", ["(A)"], 0.0),
]


@pytest.mark.parametrize(("name", "prediction", "references", "expected"), CASES)
def test_paper_scorer_reproduces_its_script(name, prediction, references, expected):
    assert SCORERS.get(name)(prediction, references) == pytest.approx(expected)


def _sci_sample(image: str, question: str, answer: str) -> Sample:
    return Sample(id=image, prompt=question, answer=answer, images=(ImageRef(f"/data/Sci/images/{image}"),))


# MCITlib eval_sci.py lines 29-56 (MLLM-DCL Sci): the rule follows the image file name's prefix
SCI_CASES = [
    ("Leaf", _sci_sample("AI2D_12.png", "What is shown?", "leaf"), 1.0),
    ("a leaf", _sci_sample("AI2D_12.png", "What is shown?", "leaf"), 0.0),
    ("about 12%", _sci_sample("MapQA_3.png", "What is the value in Ohio?", "12%"), 1.0),
    ("texas, ohio", _sci_sample("MapQA_4.png", "Which states have the highest value?", "texas, ohio, utah"), 2 / 3),
]


def test_mcitlib_sci_follows_the_image_source_and_question():
    predictions = [case[0] for case in SCI_CASES]
    samples = [case[1] for case in SCI_CASES]
    result = SCORERS.get("mcitlib_sci").score(predictions, [s.targets for s in samples], None, samples=samples)
    assert result.per_sample == pytest.approx([case[2] for case in SCI_CASES])
    assert result.score == pytest.approx(sum(case[2] for case in SCI_CASES) / len(SCI_CASES))
    with pytest.raises(ValueError, match="samples"):
        SCORERS.get("mcitlib_sci").score(predictions, [s.targets for s in samples])


def test_every_paper_scorer_has_cases_from_its_script():
    from mcit.evaluation.scorers import paper

    modules = {m.__name__ for m in (paper.coin, paper.llava, paper.mcitlib, paper.prismatic, paper.vqa_scripts)}
    registered = {name for name in SCORERS.names() if getattr(getattr(SCORERS.get(name), "fn", None), "__module__", None) in modules}
    assert registered == {case[0] for case in CASES}
    assert type(SCORERS.get("mcitlib_sci")).__module__ == paper.mcitlib.__name__


@pytest.mark.parametrize(
    ("paper_name", "mcit_name", "prediction", "references"),
    [
        ("exact_nocase", "vqa", "2", ["two"] * TEN),  # CoIN's VQAv2/VizWiz: one answer, no normalisation
        ("coin_grounding", "grounding", "[0.1, 0.2, 0.5, 0.9]", ["[0.1, 0.2, 0.5, 0.9]"]),
        ("vqa_official", "vqa", "2", ["Two"] * TEN),
    ],
)
def test_where_the_paper_script_errs_mcit_scores_the_answer_right(paper_name, mcit_name, prediction, references):
    assert SCORERS.get(paper_name).score([prediction], [references]).score == 0.0
    assert SCORERS.get(mcit_name).score([prediction], [references]).score == 1.0
