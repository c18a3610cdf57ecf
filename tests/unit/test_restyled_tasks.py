"""The restyled embedded tasks (``<task>_plain``): the original's instructions and answers, another style."""

from __future__ import annotations

import pytest

from mcit.data.synthetic.render import COLORS, SHAPES
from mcit.data.synthetic.tasks import CORPUS_TASKS, SAME_STYLE, TASKS, corpus

N = 30


@pytest.mark.parametrize("spec", SAME_STYLE, ids=lambda spec: spec.name)
def test_a_restyled_task_asks_and_answers_as_its_original_in_the_plain_style(spec):
    original = TASKS.get(spec.name.removesuffix("_plain"))
    assert spec.style == "plain" != original.style
    assert (spec.templates, spec.make, spec.max_new_tokens, spec.language_kind) == (
        original.templates, original.make, original.max_new_tokens, original.language_kind,
    )
    samples = spec.generate(N, seed=0, split="train")
    assert {s.prompt for s in samples} <= set(original.templates)
    answers = {s.answer for s in samples}
    expected = {
        "color_plain": set(COLORS), "count_plain": set("12345"), "code_plain": {c[0].upper() for c in COLORS},
        "caption_plain": {f"{c} {s}" for c in COLORS for s in SHAPES},
    }[spec.name]
    assert answers <= expected and len(answers) >= 3


def test_a_restyled_task_draws_its_objects_filled_on_a_light_background():
    sample = TASKS.get("color_plain").generate(1, seed=0, split="eval")[0]
    pixels = set(sample.image.getdata())
    assert (245, 245, 245) in pixels and COLORS[sample.answer] in pixels


def test_the_restyled_tasks_leave_the_tokenizer_corpus_as_it_was():
    assert not {spec.name for spec in SAME_STYLE} & set(CORPUS_TASKS)
    assert set(CORPUS_TASKS) | {spec.name for spec in SAME_STYLE} == set(TASKS.names())
    assert len(corpus()) == 200 * len(CORPUS_TASKS)
