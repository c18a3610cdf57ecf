"""The benchmark section: which task stream or data pool, its files, sizes and base stage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from mcit.config.base import _Strict
from mcit.errors import UserError, first_error
from mcit.training.settings import BASE_STAGE_DEFAULTS, BaseStageSettings, TrainConfig


def _default_base_tasks() -> list[str]:
    # Imported when called, as the validator below imports the benchmarks: importing
    # mcit.config loads nothing of the data side.
    from mcit.data.synthetic.tasks import LANGUAGE_SKILLS

    return ["describe", *LANGUAGE_SKILLS]


def _default_base_samples() -> dict[str, int]:
    # describe keeps the 3000 samples it had when it shared the base stage with arithmetic
    # alone (with 1000 it fell to 2.0% exact match, docs/RESULTS.md); the text-only skills
    # share the other 3000, so the stage stays at 6000 samples.
    return {name: 3000 if name == "describe" else 600 for name in _default_base_tasks()}


def _sample_counts(value: Any) -> Any:
    """One count, or task -> count: each a whole number of at least 1 (one clear error, not one per union branch)."""
    counts = value.items() if isinstance(value, dict) else [(None, value)]
    for task, count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            where = "samples_per_task" if task is None else f"samples_per_task[{task!r}]"
            raise ValueError(f"{where} must be a whole number of at least 1, got {count!r}")
    return value


class BaseStageConfig(_Strict):
    tasks: list[str] = Field(default_factory=_default_base_tasks, description="Embedded tasks of the joint base stage (instruction tuning before the stream): describe-the-object and the text-only NLU/NLG skills the stream evaluates.")
    samples_per_task: Annotated[int | dict[str, int], BeforeValidator(_sample_counts)] = Field(default_factory=_default_base_samples, description="Training samples per base task: one number for every task, or a mapping task -> samples that names every task of `tasks` (names not among them are ignored). Default: describe 3000, each text-only skill 600.")
    train: BaseStageSettings = Field(default_factory=lambda: TrainConfig(**BASE_STAGE_DEFAULTS), description="Training settings of the base stage (epochs 4 by default); settings not given keep these defaults.")

    def check_sizes(self) -> None:
        """Raise ValueError if a mapping ``samples_per_task`` leaves out a task of ``tasks``.

        Called by :class:`BenchmarkConfig` after the task names are checked, so a misspelt
        task gets its "did you mean" first.
        """
        if isinstance(self.samples_per_task, dict):
            missing = [name for name in self.tasks if name not in self.samples_per_task]
            if missing:
                raise ValueError(f"base.samples_per_task names no sample count for base task(s) {missing}")

    def samples(self, task: str) -> int:
        """Training samples of base task ``task``."""
        if isinstance(self.samples_per_task, int):
            return self.samples_per_task
        return self.samples_per_task[task]


class FileTaskConfig(_Strict):
    """A task of a file benchmark: its data files, scorer and answer length."""

    name: str = Field(description="Task name (a column of the accuracy matrix).")
    train: str | None = Field(None, description="Training file, relative to benchmark.root: LLaVA conversations or question/answer records, in any layout read by content (JSON list, JSON Lines under any name, a list under 'data'/'questions', a dict keyed by question id, a parquet file or a Hugging Face save_to_disk folder). Required for the stream's tasks; absent for eval_only.")
    eval: str | None = Field(None, description="Evaluation file, relative to benchmark.root, in any layout `train` takes: LLaVA conversations (the last reply is the reference) or question/answer records (question_id, image, question, answer or answers); repeated ids are allowed (a record is its position). Required for stream tasks and eval_only; optional for a pool's datasets.")
    images: str | None = Field(None, description="Folder the records' image paths are relative to (relative to benchmark.root); null: benchmark.images.")
    image_template: str | None = Field(None, description="Image file name of question/answer records that name no image, made from their fields with Python format syntax: VQAv2 'COCO_val2014_{image_id:012d}.jpg', GQA '{imageId}.jpg', TextVQA '{image_id}.jpg'; relative to `images`.")
    scorer: str = Field("exact_norm", description="Scorer of the evaluation answers (see `mcit ls`); its score fills the accuracy matrix.")
    paper_scorer: str | None = Field(None, description="Scorer that reproduces the evaluation script of the paper that published the task, quirks included (docs/scorers.md); computed on the same answers and reported beside `scorer`'s (results.json `paper`). null: none.")
    max_new_tokens: int = Field(16, ge=1, description="Generation budget of the evaluation answers.")
    template: str | None = Field(None, description="Prompt template with {question} for question/answer records that carry a bare question (e.g. '{question}\\nAnswer the question using a single word or phrase.'); conversation records keep their own text.")

    answer_key: str = Field("answer", description="Field of a question/answer record that holds its answer (CoIN's grounding test file: answer_bbox; POPE: label), in the eval file and in answers_file.")
    answers_file: str | None = Field(None, description="Accepted answers of the eval records in a file of their own, relative to benchmark.root (TextVQA's ten answers, VQAv2's annotations, POPE's labels, UCIT's caption references); see answers_format. Eval records it has no answers for are left out and counted.")
    answers_format: Literal["by_question_id", "coco_captions_by_position"] = Field("by_question_id", description="Layout of answers_file: records with a question id and answers, answer_key or answer, in any layout the eval file takes (TextVQA, VQAv2 annotations, POPE), joined by question_id, or by image and question text where ids do not join; or COCO captions whose image_id is the eval record's 1-based position (UCIT).")

    @field_validator("template")
    @classmethod
    def _has_question(cls, value: str | None) -> str | None:
        if value is not None and "{question}" not in value:
            raise ValueError(f"template must contain {{question}}, got {value!r}")
        return value

    @field_validator("image_template")
    @classmethod
    def _names_fields(cls, value: str | None) -> str | None:
        from mcit.data.records import template_fields

        if value is not None:
            template_fields(value)  # ValueError for a malformed template or a field that is not a plain name
        return value

    @field_validator("scorer", "paper_scorer")
    @classmethod
    def _known_scorer(cls, value: str | None) -> str | None:
        from mcit.evaluation.scorers import SCORERS

        if value is not None and value not in SCORERS:
            raise ValueError(SCORERS.unknown_message(value))
        return value


def _task_entry(value: Any) -> Any:
    """A mapping becomes a :class:`FileTaskConfig` here, so its errors name its own fields."""
    if isinstance(value, dict):
        try:
            return FileTaskConfig.model_validate(value)
        except ValidationError as error:
            name = value.get("name")
            raise ValueError(f"task {name!r}: {first_error(error)}" if isinstance(name, str) else first_error(error)) from None
    return value


TaskEntry = Annotated[str | FileTaskConfig, BeforeValidator(_task_entry)]


class BenchmarkConfig(_Strict):
    name: str = Field("embedded", description="Benchmark (see `mcit ls`): a built-in task stream ('embedded') or data pool ('lifelong'), or your own data files ('files': a stream, 'pool_files': a pool).")
    root: str | None = Field(None, description="Folder the data files of 'files'/'pool_files' tasks are relative to; a relative root is relative to the config file's folder, and null means that folder (the working directory without a config file). Stored resolved.")
    images: str | None = Field(None, description="Folder (relative to root) that the image paths of every file task are relative to, unless a task sets its own `images`. null: root, and where a path names no file there, the data file's own folder (a path that names a file in both takes root's, and `mcit data check` says so).")
    tasks: list[TaskEntry] | None = Field(None, description="Tasks of the stream (datasets of a pool benchmark), in order: names of a built-in benchmark, or for 'files'/'pool_files' one mapping per task (name, train, eval, scorer, max_new_tokens); null = the benchmark's own list.")
    eval_only: list[TaskEntry] | None = Field(None, description="Tasks evaluated after every step but never trained in the stream (e.g. language skills), in the same form as tasks; null = the benchmark's own list.")
    train_per_task: int | None = Field(None, ge=1, description="Training samples per task (per dataset of a pool benchmark); null = the benchmark's default (built-in: 2000; files: every record, else a seeded random subset of this size).")
    eval_per_task: int | None = Field(None, ge=1, description="Held-out evaluation samples per task (per skill of a pool benchmark); null = the benchmark's default (built-in: 200; files: every record).")
    base: BaseStageConfig | None = Field(default_factory=BaseStageConfig, description="Joint base stage before the stream (built-in benchmarks only); null to start the stream from the model as loaded.")

    @model_validator(mode="after")
    def _defaults_and_distinct(self) -> BenchmarkConfig:
        from mcit.benchmarks import BENCHMARKS

        try:
            benchmark = BENCHMARKS.get(self.name)
        except UserError as error:
            raise ValueError(str(error)) from None
        if self.tasks is None:
            self.tasks = list(benchmark.default_tasks)
        if self.eval_only is None:
            self.eval_only = list(benchmark.default_eval_only)
        default_train, default_eval = benchmark.default_sizes
        self.train_per_task = default_train if self.train_per_task is None else self.train_per_task
        self.eval_per_task = default_eval if self.eval_per_task is None else self.eval_per_task
        if benchmark.base_names is None and self.base is not None:
            if "base" in self.model_fields_set:
                raise ValueError(f"benchmark {self.name!r} has no base-stage data: set base: null")
            self.base = None
        if not self.tasks:
            raise ValueError("the stream needs at least one task")
        try:
            benchmark.check_tasks(self)
        except UserError as error:
            raise ValueError(str(error)) from None
        if self.base is not None:
            self.base.check_sizes()
        names = self.task_names() + self.eval_names()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task names must be distinct across tasks and eval_only: {duplicates}")
        return self

    def task_names(self) -> list[str]:
        """The names of ``tasks`` (given as names or as file tasks)."""
        return [t if isinstance(t, str) else t.name for t in self.tasks or []]

    def eval_names(self) -> list[str]:
        """The names of ``eval_only``."""
        return [t if isinstance(t, str) else t.name for t in self.eval_only or []]


class StreamInfo(_Strict):
    """Where a published stream comes from (the ``stream:`` block of the shipped YAMLs)."""

    title: str = Field(description="The stream's name.")
    paper: str = Field("", description="The paper that defines it.")
    data: str = Field("", description="Where its data comes from and how to lay it out under benchmark.root.")
    notes: list[str] = Field(default_factory=list, description="Published details that could not be confirmed, and what was chosen.")
