"""Instruction tasks of the embedded world, each a seeded generator of samples.

Every task has its own instruction templates, answer format and visual style, so a stream
of them has the properties of real continual instruction-tuning streams: new answer
vocabularies (forgetting shows as answering in the newest task's format), visual domain
shift, and text-only skills to measure linguistic forgetting. The text-only skills come in
the two kinds Srivastava et al. measure separately (:attr:`TaskSpec.language_kind`):
understanding (``"nlu"``: the answer is one of a few options the prompt names, as in
classification and multiple-choice benchmarks) and generation (``"nlg"``: an open answer
string the model has to produce).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from mcit.data.sample import LANGUAGE_KINDS, Sample
from mcit.data.synthetic.render import COLORS, SHAPES, random_things, render
from mcit.registry import Registry

ROWS = "ABC"


@dataclass(frozen=True)
class TaskSpec:
    """How to generate one task: style, templates and a sample maker.

    ``make(rng)`` returns ``(template_kwargs, answer, things)``; ``things`` is ``None`` for
    text-only tasks.

    Attributes:
        name: Task name (a column of the accuracy matrix).
        style: Visual style of the images; ``None`` for a text-only task.
        templates: Instruction templates, filled with ``make``'s keyword arguments.
        make: The sample maker.
        max_new_tokens: Generation budget of the answers.
        language_kind: For a text-only task, ``"nlu"`` (the answer is one of a few options
            the prompt names: classification, multiple choice) or ``"nlg"`` (an open answer
            string); ``None`` for a vision task. Linguistic forgetting is reported per kind.

    Raises:
        ValueError: If a text-only task has no language kind or a vision task has one.
    """

    name: str
    style: str | None
    templates: tuple[str, ...]
    make: Callable[[random.Random], tuple[dict, str, list | None]]
    max_new_tokens: int = 6
    language_kind: str | None = None

    def __post_init__(self) -> None:
        if self.style is None and self.language_kind not in LANGUAGE_KINDS:
            raise ValueError(f"text-only task {self.name!r} needs a language_kind in {LANGUAGE_KINDS}, got {self.language_kind!r}")
        if self.style is not None and self.language_kind is not None:
            raise ValueError(f"vision task {self.name!r} has no language_kind, got {self.language_kind!r}")

    def generate(self, n: int, seed: int, split: str) -> list[Sample]:
        """Generate ``n`` samples; ``split`` ("train"/"eval"/...) decorrelates the seeds."""
        rng = random.Random(f"{self.name}/{split}/{seed}")
        samples = []
        for index in range(n):
            fields, answer, things = self.make(rng)
            prompt = rng.choice(self.templates).format(**fields)
            image = None if things is None else render(things, self.style or "plain", rng)
            samples.append(Sample(f"{self.name}-{split}-{index}", prompt, answer, () if image is None else (image,), skill=self.name))
        return samples


TASKS: Registry[TaskSpec] = Registry("embedded task")


def _register(spec: TaskSpec) -> TaskSpec:
    TASKS.register(spec.name, help=f"{spec.templates[0]} (style: {spec.style or 'text only'})")(spec)
    return spec


def _color(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    return {}, things[0].color, things


def _count(rng: random.Random) -> tuple[dict, str, list]:
    count = rng.randint(1, 5)
    return {}, str(count), random_things(rng, count)


def _position(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    return {}, f"{ROWS[things[0].row]}{things[0].col + 1}", things


def _code(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    return {}, things[0].color[0].upper(), things


def _shape(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    return {}, things[0].shape, things


def _caption(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    return {}, f"{things[0].color} {things[0].shape}", things


def _describe(rng: random.Random) -> tuple[dict, str, list]:
    things = random_things(rng, 1)
    article = "an" if things[0].color[0] in "aeiou" else "a"
    thing = things[0]
    return {}, f"{article} {thing.color} {thing.shape} in {ROWS[thing.row]}{thing.col + 1}", things


def _arithmetic(rng: random.Random) -> tuple[dict, str, None]:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return {"a": a, "b": b}, str(a + b), None


def _compare(rng: random.Random) -> tuple[dict, str, None]:
    a, b = rng.sample(range(10), 2)
    return {"a": a, "b": b}, "yes" if a > b else "no", None


def _choice(rng: random.Random) -> tuple[dict, str, None]:
    category = rng.choice(("color", "shape"))
    right, others = (list(COLORS), SHAPES) if category == "color" else (SHAPES, list(COLORS))
    answer = rng.choice(right)
    options = [answer, *rng.sample(others, 2)]
    rng.shuffle(options)
    return {"category": category, "a": options[0], "b": options[1], "c": options[2]}, answer, None


# Regular (-s, -es, -ies, -ves) and irregular plurals; every singular is also a word to reverse.
PLURALS = {
    "cat": "cats", "dog": "dogs", "cup": "cups", "box": "boxes", "fox": "foxes", "bus": "buses",
    "city": "cities", "baby": "babies", "leaf": "leaves", "wolf": "wolves", "mouse": "mice",
    "child": "children", "man": "men", "foot": "feet", "tooth": "teeth", "sheep": "sheep",
}  # fmt: skip
WORDS = (*COLORS, *SHAPES, *PLURALS)
"""The words the ``reverse`` task spells backwards."""


def _reverse(rng: random.Random) -> tuple[dict, str, None]:
    word = rng.choice(WORDS)
    return {"word": word}, word[::-1], None


def _plural(rng: random.Random) -> tuple[dict, str, None]:
    noun = rng.choice(list(PLURALS))
    return {"noun": noun}, PLURALS[noun], None


COLOR = _register(TaskSpec(
    "color", "dark",
    ("What color is the object?", "Name the color of the shape.", "Which color do you see?"),
    _color,
))
COUNT = _register(TaskSpec(
    "count", "noisy",
    ("How many objects are there? Answer with a number.", "Count the shapes.", "Number of objects?"),
    _count,
))
POSITION = _register(TaskSpec(
    "position", "outline",
    ("Which grid cell holds the object? Answer like B2.", "Give the cell of the shape.", "Where is it on the grid?"),
    _position,
))
CODE = _register(TaskSpec(
    "code", "outline",
    ("Answer with the color's one-letter code.", "Color code?", "Give the letter code of the color."),
    _code,
))
SHAPE = _register(TaskSpec(
    # Shape in the base stage's plain style: in the dark style the tiny model learnt shapes
    # too slowly on some seeds (seed 2: 40-84% after 3 epochs; issue 10). Colour, which
    # any style keeps visible, takes the dark style.
    "shape", "plain",
    ("What shape is shown?", "Name the shape in the image.", "Which shape is this?"),
    _shape,
))
CAPTION = _register(TaskSpec(
    "caption", "striped",
    ("Write a two-word caption.", "Caption this picture briefly.", "Describe it in two words."),
    _caption,
))
DESCRIBE = _register(TaskSpec(
    "describe", "plain",
    ("What is in the image?", "What do you see?"),
    _describe,
))
# Text-only skills, taught in the base stage and evaluated (never trained) in the stream.
# arithmetic's answer is an open number the model writes, not an option named in the
# prompt: it counts as generation (NLG).
ARITHMETIC = _register(TaskSpec(
    "arithmetic", None,
    ("What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}."),
    _arithmetic, language_kind="nlg",
))
# Both NLU tasks are kept easy enough for the tiny model's base stage (docs/RESULTS.md,
# "NLU and NLG skills"): asking "more" and "less" in turn left compare at 72.0%, and a
# choice answered with its option letter "(A) .. (B) .. (C)" stayed at chance (36.5%). One
# relation (more/greater/bigger) and answering with the chosen word both reached 100.0%
# with 857-1000 base samples each (97.5 and 100.0 with the default 600).
COMPARE = _register(TaskSpec(
    "compare", None,
    ("Is {a} more than {b}? Answer yes or no.", "Answer yes or no: is {a} greater than {b}?", "{a} is bigger than {b}. True? Answer yes or no."),
    _compare, max_new_tokens=3, language_kind="nlu",
))
CHOICE = _register(TaskSpec(
    "choice", None,
    ("Which word is a {category}: {a}, {b} or {c}?", "Pick the {category}: {a}, {b} or {c}.", "{a}, {b} or {c}: which one is a {category}?"),
    _choice, max_new_tokens=4, language_kind="nlu",
))
REVERSE = _register(TaskSpec(
    "reverse", None,
    ("Spell {word} backwards.", "Write {word} in reverse.", "Reverse the letters of {word}."),
    _reverse, max_new_tokens=10, language_kind="nlg",
))
PLURAL = _register(TaskSpec(
    "plural", None,
    ("What is the plural of {noun}?", "Give the plural of {noun}.", "One {noun}, two ..."),
    _plural, max_new_tokens=8, language_kind="nlg",
))

LANGUAGE_SKILLS = ("compare", "choice", "arithmetic", "reverse", "plural")
"""The default stream's text-only skills (NLU, then NLG): taught in the base stage, evaluated after every task."""

CORPUS_TASKS = tuple(TASKS)
"""The tasks whose text trains the tiny tokenizer: every task registered above. The restyled tasks
below say what their originals say, so leaving them out keeps the tokenizer (and every run) as it was."""


def restyled(spec: TaskSpec, style: str) -> TaskSpec:
    """``spec`` drawn in ``style``, named ``<name>_<style>``: the same instructions, answers and budget."""
    return replace(spec, name=f"{spec.name}_{style}", style=style)


# The default stream's tasks drawn in one style (shape is plain already): a stream whose tasks'
# images are alike, for DGG's claim that guidance helps most where the tasks' images differ
# (experiments/seed_claims.py compares it with the default stream, one style per task).
SAME_STYLE = tuple(_register(restyled(spec, "plain")) for spec in (COLOR, COUNT, CODE, CAPTION))


def corpus() -> list[str]:
    """All text the embedded world can produce, for training the tiny tokenizer."""
    return list(_corpus())


@functools.cache
def _corpus() -> tuple[str, ...]:
    """The corpus, drawn once per process: it draws (and drops) 2,400 images, ~0.1 s that every run
    of the embedded world would pay again (the tests run hundreds in one process)."""
    lines = []
    for name in CORPUS_TASKS:
        spec = TASKS.get(name)
        for sample in spec.generate(200, seed=0, split="corpus"):
            lines.append(f"USER: <image>\n{sample.prompt} ASSISTANT: {sample.answer}</s>")
    return tuple(lines)
