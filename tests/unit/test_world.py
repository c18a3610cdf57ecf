"""Tests for the embedded world (mcit.data.synthetic): determinism, images, answers, corpus."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
from PIL import Image

from mcit.data.synthetic import render as render_module
from mcit.data.synthetic.render import COLORS, SHAPES, STYLES, Thing, random_things, render
from mcit.data.synthetic.tasks import CORPUS_TASKS, LANGUAGE_SKILLS, PLURALS, ROWS, TASKS, WORDS, TaskSpec, corpus
from mcit.evaluation.scorers import SCORERS
from mcit.models.tiny import TinySpec, train_tokenizer

N = 40
SIZE = 48
CELL = SIZE // 3
TEXT_ONLY = {"arithmetic", "compare", "choice", "reverse", "plural"}
KINDS = {"compare": "nlu", "choice": "nlu", "arithmetic": "nlg", "reverse": "nlg", "plural": "nlg"}
ALL_TASKS = TASKS.names()


def fingerprint(samples):
    return [(s.id, s.prompt, s.answer, None if s.image is None else s.image.tobytes()) for s in samples]


def colored_cells(image: Image.Image) -> dict[tuple[int, int], set[str]]:
    """Grid cell -> names of the palette colours drawn in it (exact RGB matches)."""
    by_rgb = {rgb: name for name, rgb in COLORS.items()}
    cells: dict[tuple[int, int], set[str]] = {}
    pixels = image.load()
    for y in range(SIZE):
        for x in range(SIZE):
            name = by_rgb.get(pixels[x, y])
            if name is not None:
                cells.setdefault((min(y // CELL, 2), min(x // CELL, 2)), set()).add(name)
    return cells


def only_color(image: Image.Image) -> tuple[tuple[int, int], str]:
    cells = colored_cells(image)
    assert len(cells) == 1, cells
    (cell, names), = cells.items()
    assert len(names) == 1, names
    return cell, next(iter(names))


def test_the_registry_holds_the_known_tasks():
    # A new task must get its answer check below (the restyled ones: tests/unit/test_restyled_tasks.py).
    restyled = {"color_plain", "count_plain", "code_plain", "caption_plain"}
    assert set(ALL_TASKS) == {"color", "count", "position", "code", "shape", "caption", "describe"} | TEXT_ONLY | restyled


@pytest.mark.parametrize("name", ALL_TASKS)
def test_generation_is_deterministic(name):
    spec = TASKS.get(name)
    first = spec.generate(N, seed=3, split="train")
    second = spec.generate(N, seed=3, split="train")
    assert len(first) == N
    assert fingerprint(first) == fingerprint(second)
    assert [s.id for s in first] == [f"{name}-train-{i}" for i in range(N)]
    assert all(s.skill == name for s in first)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_seeds_and_splits_give_different_samples(name):
    spec = TASKS.get(name)
    base = fingerprint(spec.generate(N, seed=0, split="train"))
    other_seed = fingerprint(spec.generate(N, seed=1, split="train"))
    other_split = fingerprint(spec.generate(N, seed=0, split="eval"))
    strip = lambda rows: [row[1:] for row in rows]  # noqa: E731  (ids name the split)
    assert strip(base) != strip(other_seed)
    assert strip(base) != strip(other_split)
    assert {row[0] for row in other_split} == {f"{name}-eval-{i}" for i in range(N)}


@pytest.mark.parametrize("name", ALL_TASKS)
def test_a_prefix_does_not_depend_on_n(name):
    spec = TASKS.get(name)
    assert fingerprint(spec.generate(5, seed=2, split="eval")) == fingerprint(spec.generate(N, seed=2, split="eval"))[:5]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_images_are_48px_rgb_or_none_for_text_only(name):
    for sample in TASKS.get(name).generate(N, seed=0, split="train"):
        if name in TEXT_ONLY:
            assert sample.image is None
        else:
            assert isinstance(sample.image, Image.Image)
            assert sample.image.size == (SIZE, SIZE)
            assert sample.image.mode == "RGB"


@pytest.mark.parametrize("name", ALL_TASKS)
def test_prompts_come_from_the_task_templates(name):
    spec = TASKS.get(name)
    patterns = [re.compile("^" + re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(t)) + "$") for t in spec.templates]
    prompts = [s.prompt for s in spec.generate(N, seed=0, split="train")]
    assert all(any(p.match(prompt) for p in patterns) for prompt in prompts), prompts
    assert len(set(prompts)) > 1  # templates vary


def test_color_answers_match_the_drawn_color():
    for sample in TASKS.get("color").generate(N, seed=0, split="train"):
        assert sample.answer in COLORS
        _, drawn = only_color(sample.image)
        assert drawn == sample.answer


def test_count_answers_are_digits_1_to_5_matching_the_objects():
    answers = set()
    for sample in TASKS.get("count").generate(N, seed=0, split="train"):
        assert re.fullmatch(r"[1-5]", sample.answer)
        answers.add(sample.answer)
        assert len(colored_cells(sample.image)) == int(sample.answer)
    assert len(answers) >= 4


def test_code_answers_are_the_colors_first_letter_uppercased():
    codes = {name[0].upper(): name for name in COLORS}
    assert len(codes) == len(COLORS)  # unambiguous codes
    for sample in TASKS.get("code").generate(N, seed=0, split="train"):
        assert sample.answer in codes
        _, drawn = only_color(sample.image)
        assert sample.answer == drawn[0].upper()


def test_position_answers_name_the_cell():
    for sample in TASKS.get("position").generate(N, seed=0, split="train"):
        assert re.fullmatch(r"[ABC][123]", sample.answer)
        (row, col), _ = only_color(sample.image)
        assert sample.answer == f"{ROWS[row]}{col + 1}"


def test_shape_answers_are_shape_names():
    answers = {s.answer for s in TASKS.get("shape").generate(N, seed=0, split="train")}
    assert answers <= set(SHAPES)
    assert len(answers) >= 3


def test_caption_answers_are_color_then_shape():
    for sample in TASKS.get("caption").generate(N, seed=0, split="train"):
        color, shape = sample.answer.split(" ")
        assert color in COLORS and shape in SHAPES
        _, drawn = only_color(sample.image)
        assert drawn == color


def test_describe_answers_have_article_color_shape_and_cell():
    for sample in TASKS.get("describe").generate(N, seed=0, split="train"):
        match = re.fullmatch(r"(a|an) (\w+) (\w+) in ([ABC][123])", sample.answer)
        assert match, sample.answer
        article, color, shape, cell = match.groups()
        assert article == ("an" if color[0] in "aeiou" else "a")
        assert color in COLORS and shape in SHAPES
        (row, col), drawn = only_color(sample.image)
        assert drawn == color and cell == f"{ROWS[row]}{col + 1}"


def test_arithmetic_answer_is_the_sum_of_the_prompt_digits():
    for sample in TASKS.get("arithmetic").generate(N, seed=0, split="train"):
        numbers = [int(x) for x in re.findall(r"\d+", sample.prompt)]
        assert len(numbers) == 2 and all(0 <= x <= 9 for x in numbers)
        assert sample.answer == str(sum(numbers))


def test_text_only_tasks_declare_their_language_kind_and_vision_tasks_none():
    assert {n: TASKS.get(n).language_kind for n in TEXT_ONLY} == KINDS
    assert all(TASKS.get(n).language_kind is None for n in ALL_TASKS if n not in TEXT_ONLY)
    assert set(LANGUAGE_SKILLS) == TEXT_ONLY
    with pytest.raises(ValueError, match="needs a language_kind"):
        TaskSpec("words", None, ("Say it.",), lambda rng: ({}, "it", None))
    with pytest.raises(ValueError, match="has no language_kind"):
        TaskSpec("picture", "plain", ("Say it.",), lambda rng: ({}, "it", None), language_kind="nlu")


@pytest.mark.parametrize("name", sorted(n for n in TEXT_ONLY if KINDS[n] == "nlu"))
def test_nlu_answers_are_one_of_the_options_the_prompt_names(name):
    samples = TASKS.get(name).generate(N, seed=0, split="train")
    assert all(re.search(rf"\b{s.answer}\b", s.prompt) for s in samples), [(s.prompt, s.answer) for s in samples]
    assert len({s.answer for s in samples}) >= 2


@pytest.mark.parametrize("name", sorted(n for n in TEXT_ONLY if KINDS[n] == "nlg"))
def test_nlg_answers_are_open_strings(name):
    answers = {s.answer for s in TASKS.get(name).generate(N, seed=0, split="train")}
    assert len(answers) >= 8, answers


def test_compare_answers_whether_the_first_digit_is_larger():
    answers = set()
    for sample in TASKS.get("compare").generate(N, seed=0, split="train"):
        a, b = (int(x) for x in re.findall(r"\d+", sample.prompt))
        assert a != b and sample.answer == ("yes" if a > b else "no")
        answers.add(sample.answer)
    assert answers == {"yes", "no"}


def test_choice_answer_is_the_only_word_of_the_asked_category():
    for sample in TASKS.get("choice").generate(N, seed=0, split="train"):
        category = re.search(r"\b(color|shape)\b", sample.prompt).group(1)
        options = re.findall(r"\b(" + "|".join((*COLORS, *SHAPES)) + r")\b", sample.prompt)
        members = [word for word in options if word in (COLORS if category == "color" else SHAPES)]
        assert len(options) == 3 and members == [sample.answer]


def test_reverse_and_plural_answers():
    for sample in TASKS.get("reverse").generate(N, seed=0, split="train"):
        word = re.search(r"\b(" + "|".join(WORDS) + r")\b", sample.prompt).group(1)
        assert sample.answer == word[::-1]
    for sample in TASKS.get("plural").generate(N, seed=0, split="train"):
        noun = re.search(r"\b(" + "|".join(PLURALS) + r")\b", sample.prompt).group(1)
        assert sample.answer == PLURALS[noun]
    assert {"mice", "children", "boxes", "cities"} <= set(PLURALS.values())


def test_answers_fit_the_generation_budget_and_survive_the_answer_normalisation():
    tokenizer = train_tokenizer(corpus(), TinySpec().vocab_size)
    scorer = SCORERS.get("exact_norm")  # the embedded benchmark's scorer
    for name in ALL_TASKS:
        spec = TASKS.get(name)
        for sample in spec.generate(N, seed=0, split="eval"):
            # The answer follows "ASSISTANT: ", so it is tokenized after a space.
            assert len(tokenizer(" " + sample.answer, add_special_tokens=False)["input_ids"]) <= spec.max_new_tokens, (name, sample.answer)
            # An answer the VQA normalisation empties (an option "A" is the article "a") would match "".
            assert scorer.score([sample.answer, ""], [[sample.answer], [sample.answer]]).per_sample == [1.0, 0.0], (name, sample.answer)


def test_task_styles_differ_between_stream_tasks():
    styles = {name: TASKS.get(name).style for name in ALL_TASKS}
    assert all(styles[n] is None for n in TEXT_ONLY)
    assert all(styles[n] in STYLES for n in ALL_TASKS if n not in TEXT_ONLY)
    assert len({styles[n] for n in ("color", "count", "code", "shape", "caption")}) >= 4


# -- render --------------------------------------------------------------------------------


def test_render_rejects_unknown_style():
    with pytest.raises(ValueError, match="unknown style 'sepia'"):
        render([Thing(0, 0, "red", "square")], "sepia", random.Random(0))


def test_render_rejects_unknown_shape():
    with pytest.raises(ValueError, match="unknown shape"):
        render([Thing(0, 0, "red", "hexagon")], "plain", random.Random(0))


def test_styles_give_different_pixels_for_the_same_objects():
    things = [Thing(0, 0, "red", "square"), Thing(1, 2, "blue", "circle"), Thing(2, 1, "green", "cross")]
    images = {style: render(things, style, random.Random(0)).tobytes() for style in STYLES}
    assert len(set(images.values())) == len(STYLES)


@pytest.mark.parametrize("style", STYLES)
def test_render_is_deterministic_given_the_rng(style):
    things = [Thing(1, 1, "purple", "triangle")]
    first = render(things, style, random.Random(5))
    second = render(things, style, random.Random(5))
    assert first.size == (48, 48) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()


def test_shapes_give_different_pixels():
    images = {shape: render([Thing(1, 1, "red", shape)], "plain", random.Random(0)).tobytes() for shape in SHAPES}
    assert len(set(images.values())) == len(SHAPES)


def test_render_size_and_grid_arguments():
    image = render([Thing(3, 3, "orange", "square")], "plain", random.Random(0), size=64, grid=4)
    assert image.size == (64, 64)
    assert image.getpixel((3 * 16 + 4, 3 * 16 + 4)) == COLORS["orange"]
    assert image.getpixel((2, 2)) == (245, 245, 245)


def test_random_things_use_distinct_cells_and_fixed_attributes():
    rng = random.Random(0)
    for count in range(1, 10):
        things = random_things(rng, count, color="green", shape="cross")
        assert len({(t.row, t.col) for t in things}) == count
        assert all(t.color == "green" and t.shape == "cross" for t in things)
        assert all(0 <= t.row < 3 and 0 <= t.col < 3 for t in things)
    with pytest.raises(ValueError):
        random_things(rng, 10)


def test_palette_is_distinct():
    assert len(set(render_module.COLORS.values())) == len(render_module.COLORS)


def test_palette_colours_are_far_apart():
    # The old palette (closest pair yellow/orange at 72) left colour to be learned on some
    # seeds only (issue 10); the default stream's diagonal >= 90% was measured at 110.
    closest = min(
        math.dist(COLORS[a], COLORS[b]) for a, b in itertools.combinations(COLORS, 2)
    )
    assert closest >= 100, closest


@pytest.mark.parametrize("style", STYLES)
def test_every_shape_shows_enough_coloured_pixels(style):
    # One object is one 16x16 patch; 1-px outlines (27-52 pixels) made `code` unlearnable on
    # some seeds (issue 10).
    for shape in SHAPES:
        image = render([Thing(1, 1, "red", shape)], style, random.Random(0))
        pixels = image.load()
        drawn = sum(pixels[x, y] == COLORS["red"] for x in range(SIZE) for y in range(SIZE))
        assert drawn >= 50, (style, shape, drawn)


# -- corpus -----------------------------------------------------------------------------------


def test_corpus_is_deterministic_and_in_chat_format():
    lines = corpus()
    assert lines == corpus()
    assert len(lines) == 200 * len(CORPUS_TASKS)  # the restyled tasks repeat their originals' text: left out
    assert all(re.fullmatch(r"USER: <image>\n.+ ASSISTANT: .+</s>", line, flags=re.S) for line in lines)


def test_corpus_contains_every_tasks_answers_and_templates():
    lines = corpus()
    answers_in_corpus = {line.rsplit(" ASSISTANT: ", 1)[1].removesuffix("</s>") for line in lines}
    words_in_corpus = {word for answer in answers_in_corpus for word in answer.split()}
    text = "\n".join(lines)
    for name in ALL_TASKS:
        spec = TASKS.get(name)
        for sample in spec.generate(N, seed=1, split="train"):
            assert set(sample.answer.split()) <= words_in_corpus, (name, sample.answer)
        for template in spec.templates:
            assert template.split("{")[0] in text, (name, template)
    # closed vocabularies appear in full
    assert set(COLORS) | set(SHAPES) | {"1", "2", "3", "4", "5"} <= answers_in_corpus | words_in_corpus
    assert {n[0].upper() for n in COLORS} <= answers_in_corpus
    assert {f"{r}{c}" for r in ROWS for c in "123"} <= answers_in_corpus
